//! What a run was made from, by content: the files of the splits it trained and validated
//! on, and its teacher's weights. A run is finished only *for these*: `hkd-train --resume`,
//! the grid's skip test, the pipeline and `hkd-grid status` all ask
//! [`Provenance::changes`] (through [`RunDir::status_for`] or the trainer's comparison of
//! configs), so a changed dataset or a retrained teacher is refused with both hashes,
//! never silently reused.
//!
//! The trainer records the split files as the dataset reader lists them (relative to the
//! dataset directory) and the teacher's weights file; a checker without the dataset reader
//! (the grid builds without candle) re-hashes the recorded files with [`Provenance::recheck`].
//! Runs of older hkd versions have no `[provenance]`: for them only the dataset hash of
//! `config.toml` is compared (by the trainer), as before.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{RunDir, RunStatus, sha256_file};

/// One input file as the run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Relative to the dataset directory for a data file; as resolved for teacher weights.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex ([`MISSING`] when the file could not be read).
    pub sha256: String,
}

/// The digest of a file that is not there (or cannot be read) now.
pub const MISSING: &str = "missing";

/// What a run was made from: `[provenance]` of `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Each split the run reads (training and validation), with its files in the reader's
    /// order. Other splits of the dataset directory are not part of it: adding a split to a
    /// dataset leaves its runs finished.
    pub splits: BTreeMap<String, Vec<FileDigest>>,
    /// Per split, a digest of what the dataset reader takes besides the files' bytes
    /// (classes, normalisation, the split's manifest entry). Only the trainer, which has
    /// the reader, computes it anew; [`Provenance::recheck`] keeps the recorded one, so
    /// the grid's skip test sees file changes, `hkd-train --resume` these too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// The teacher's weights file, for a network teacher (none for `baseline` / `human`:
    /// human labels are files of the training split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_weights: Option<FileDigest>,
}

/// Digests by path, so that a grid of thousands of runs over one dataset hashes each file
/// once per process. An entry is reused only while the file's size and modification time
/// are the ones it was hashed at.
#[derive(Debug, Default)]
pub struct DigestCache {
    known: HashMap<PathBuf, (u64, Option<std::time::SystemTime>, String)>,
}

impl DigestCache {
    /// The digest of the file at `read`, recorded under the name `recorded`; a file that
    /// cannot be read has digest [`MISSING`].
    pub fn digest(&mut self, read: &Path, recorded: &Path) -> FileDigest {
        let meta = std::fs::metadata(read).ok();
        let (bytes, modified) = match &meta {
            Some(m) => (m.len(), m.modified().ok()),
            None => (0, None),
        };
        let sha256 = match self.known.get(read) {
            Some((b, m, sha)) if meta.is_some() && *b == bytes && *m == modified => sha.clone(),
            _ => {
                let sha = match (&meta, sha256_file(read)) {
                    (Some(_), Ok(sha)) => sha,
                    _ => MISSING.to_string(),
                };
                self.known
                    .insert(read.to_path_buf(), (bytes, modified, sha.clone()));
                sha
            }
        };
        FileDigest {
            path: recorded.to_path_buf(),
            bytes,
            sha256,
        }
    }
}

impl Provenance {
    /// The provenance of a run reading `splits` (each with its files, absolute or relative
    /// to the current directory) of the dataset directory `data_dir`, with the teacher's
    /// weights file `teacher_weights`. Data files are recorded relative to `data_dir`.
    pub fn of(
        data_dir: &Path,
        splits: &[(&str, String, Vec<PathBuf>)],
        teacher_weights: Option<&Path>,
        cache: &mut DigestCache,
    ) -> Provenance {
        let settings = splits
            .iter()
            .map(|(name, settings, _)| (name.to_string(), settings.clone()))
            .collect();
        let splits = splits
            .iter()
            .map(|(name, _, files)| {
                let digests = files
                    .iter()
                    .map(|f| cache.digest(f, f.strip_prefix(data_dir).unwrap_or(f)))
                    .collect();
                (name.to_string(), digests)
            })
            .collect();
        Provenance {
            splits,
            settings,
            teacher_weights: teacher_weights.map(|w| cache.digest(w, w)),
        }
    }

    /// The same files, hashed now: the data files under `data_dir` (where the run's
    /// specification says the dataset is now), the teacher's weights at `teacher_weights`
    /// (where its teacher resolves now; none for a teacher without weights).
    pub fn recheck(
        &self,
        data_dir: &Path,
        teacher_weights: Option<&Path>,
        cache: &mut DigestCache,
    ) -> Provenance {
        let splits = self
            .splits
            .iter()
            .map(|(name, files)| {
                let digests = files
                    .iter()
                    .map(|f| cache.digest(&data_dir.join(&f.path), &f.path))
                    .collect();
                (name.clone(), digests)
            })
            .collect();
        Provenance {
            splits,
            settings: self.settings.clone(),
            teacher_weights: teacher_weights.map(|w| cache.digest(w, w)),
        }
    }

    /// What differs between the inputs a run was made from (`self`, as recorded) and
    /// `current`, one line each with both hashes: empty when the run is the same run for
    /// `current`. Where a split lies and where the teacher's weights lie do not count,
    /// only what they hold.
    pub fn changes(&self, current: &Provenance) -> Vec<String> {
        let mut out = self.data_changes(current);
        out.extend(self.teacher_changes(current));
        out
    }

    /// The data part of [`Provenance::changes`]: the splits' files and settings.
    pub fn data_changes(&self, current: &Provenance) -> Vec<String> {
        let mut out = Vec::new();
        for (split, was) in &self.settings {
            if let Some(now) = current.settings.get(split)
                && now != was
            {
                out.push(format!(
                    "data split `{split}`: its classes, normalisation or manifest entry changed (settings {} -> {})",
                    short(was),
                    short(now)
                ));
            }
        }
        for (split, files) in &self.splits {
            let Some(now) = current.splits.get(split) else {
                out.push(format!("data split `{split}`: recorded, not read now"));
                continue;
            };
            let now_by_path: BTreeMap<&Path, &FileDigest> =
                now.iter().map(|f| (f.path.as_path(), f)).collect();
            for f in files {
                match now_by_path.get(f.path.as_path()) {
                    None => out.push(format!(
                        "data split `{split}`: {} is no longer one of its files",
                        f.path.display()
                    )),
                    Some(n) if n.sha256 != f.sha256 => out.push(format!(
                        "data split `{split}`: {} sha256 {} -> {} (the dataset changed)",
                        f.path.display(),
                        short(&f.sha256),
                        short(&n.sha256)
                    )),
                    Some(_) => {}
                }
            }
            let recorded: BTreeMap<&Path, ()> =
                files.iter().map(|f| (f.path.as_path(), ())).collect();
            for n in now
                .iter()
                .filter(|n| !recorded.contains_key(n.path.as_path()))
            {
                out.push(format!(
                    "data split `{split}`: {} is a new file of it",
                    n.path.display()
                ));
            }
        }
        for split in current
            .splits
            .keys()
            .filter(|s| !self.splits.contains_key(*s))
        {
            out.push(format!("data split `{split}`: read now, not recorded"));
        }
        out
    }

    /// The teacher part of [`Provenance::changes`]: its weights.
    pub fn teacher_changes(&self, current: &Provenance) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.teacher_weights, &current.teacher_weights) {
            (Some(was), Some(now)) if was.sha256 != now.sha256 => out.push(format!(
                "teacher weights {}: sha256 {} -> {} (the teacher was retrained or replaced)",
                now.path.display(),
                short(&was.sha256),
                short(&now.sha256)
            )),
            (Some(was), None) => out.push(format!(
                "teacher weights: the run was made from {} ({}), its teacher has none now",
                was.path.display(),
                short(&was.sha256)
            )),
            (None, Some(now)) => out.push(format!(
                "teacher weights: the run was made without, its teacher has {} now",
                now.path.display()
            )),
            _ => {}
        }
        out
    }
}

/// The first 12 hex digits of a digest: enough to tell two apart in a message.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

impl RunDir {
    /// Where the run stands for the inputs `current`: [`RunStatus::Finished`] only when it
    /// finished for them; a run that finished from other inputs is
    /// [`RunStatus::FinishedForOtherInputs`] with what changed. A run without recorded
    /// provenance (older hkd) is judged by [`RunDir::status`] alone.
    pub fn status_for(&self, current: &Provenance) -> RunStatus {
        let status = self.status();
        if status != RunStatus::Finished {
            return status;
        }
        match self.read_config().map(|c| c.provenance) {
            Ok(Some(recorded)) => {
                let changes = recorded.changes(current);
                if changes.is_empty() {
                    RunStatus::Finished
                } else {
                    RunStatus::FinishedForOtherInputs { changes }
                }
            }
            _ => status,
        }
    }

    /// [`RunDir::status_for`] with the run's recorded inputs hashed again where they are
    /// now: the data files under `data_dir`, the teacher's weights at `teacher_weights`.
    /// For a checker that cannot list a dataset's files (the grid).
    pub fn status_now(
        &self,
        data_dir: &Path,
        teacher_weights: Option<&Path>,
        cache: &mut DigestCache,
    ) -> RunStatus {
        let status = self.status();
        if status != RunStatus::Finished {
            return status;
        }
        match self.read_config().map(|c| c.provenance) {
            Ok(Some(recorded)) => {
                self.status_for(&recorded.recheck(data_dir, teacher_weights, cache))
            }
            _ => status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn a_changed_byte_a_moved_dataset_and_a_retrained_teacher() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let labels = write(&data, "train/labels.npy", b"labels");
        let images = write(&data, "train/images.npy", b"images");
        let val = write(&data, "val/labels.npy", b"val");
        let weights = write(tmp.path(), "teacher/best.safetensors", b"weights-1");
        let splits = [
            (
                "train",
                "s1".to_string(),
                vec![images.clone(), labels.clone()],
            ),
            ("val", "s2".to_string(), vec![val]),
        ];
        let recorded = Provenance::of(&data, &splits, Some(&weights), &mut DigestCache::default());
        assert_eq!(
            recorded.splits["train"][1].path,
            Path::new("train/labels.npy")
        );
        assert_eq!(recorded.splits["train"][1].bytes, 6);
        // printf labels | sha256sum
        assert_eq!(
            recorded.splits["train"][1].sha256,
            "d772ebb4590212c65cc31888ee55c3a893d866d8479f84a4c0ca36918a3fa75f"
        );
        let same = recorded.recheck(&data, Some(&weights), &mut DigestCache::default());
        assert!(recorded.changes(&same).is_empty());

        // the dataset moved: the same content elsewhere is the same run
        let moved = tmp.path().join("moved");
        std::fs::rename(&data, &moved).unwrap();
        let there = recorded.recheck(&moved, Some(&weights), &mut DigestCache::default());
        assert!(
            recorded.changes(&there).is_empty(),
            "{:?}",
            recorded.changes(&there)
        );

        // one byte of the labels changed
        write(&moved, "train/labels.npy", b"labelz");
        let changed = recorded.recheck(&moved, Some(&weights), &mut DigestCache::default());
        let c = recorded.changes(&changed);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].starts_with("data split `train`: train/labels.npy sha256 ")
                && c[0].contains(&recorded.splits["train"][1].sha256[..12])
                && c[0].contains(&changed.splits["train"][1].sha256[..12])
                && c[0].contains(" -> "),
            "{c:?}"
        );

        // the teacher retrained; and a deleted file
        write(tmp.path(), "teacher/best.safetensors", b"weights-2");
        std::fs::remove_file(moved.join("val/labels.npy")).unwrap();
        let later = recorded.recheck(&moved, Some(&weights), &mut DigestCache::default());
        let c = recorded.changes(&later);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(
            c[1].contains("val/labels.npy sha256")
                && c[1].ends_with(&format!("-> {MISSING} (the dataset changed)")),
            "{c:?}"
        );
        assert!(
            c[2].starts_with("teacher weights ") && c[2].contains("retrained"),
            "{c:?}"
        );
    }

    #[test]
    fn split_files_added_or_dropped_and_teachers_gained_or_lost_are_changes() {
        let d = |p: &str, s: &str| FileDigest {
            path: p.into(),
            bytes: 1,
            sha256: s.into(),
        };
        let recorded = Provenance {
            splits: [("train".to_string(), vec![d("a", "1"), d("b", "2")])].into(),
            settings: [("train".to_string(), "aaaa".to_string())].into(),
            teacher_weights: Some(d("/t/best.safetensors", "9")),
        };
        let now = Provenance {
            splits: [
                ("train".to_string(), vec![d("a", "1"), d("c", "3")]),
                ("val".to_string(), vec![]),
            ]
            .into(),
            settings: [("train".to_string(), "bbbb".to_string())].into(),
            teacher_weights: None,
        };
        assert_eq!(
            recorded.changes(&now),
            vec![
                "data split `train`: its classes, normalisation or manifest entry changed (settings aaaa -> bbbb)".to_string(),
                "data split `train`: b is no longer one of its files".into(),
                "data split `train`: c is a new file of it".into(),
                "data split `val`: read now, not recorded".into(),
                "teacher weights: the run was made from /t/best.safetensors (9), its teacher has none now".into(),
            ]
        );
        assert!(recorded.changes(&recorded).is_empty());
    }
}
