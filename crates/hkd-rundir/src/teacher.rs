//! Resolving `--teacher` into a [`TeacherSpec`]: the one resolver, used by the trainer
//! (which then loads the network) and by the grid (which only needs the run's path).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::TeacherSpec;
use crate::error::RunDirError;
use crate::files::{BestRecord, RunDir, best_run_under};
use crate::spec::TeacherChoice;

/// A resolved teacher: what the run's config records, and for a network teacher the
/// weights file to load.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTeacher {
    /// As written into the run's `config.toml`; its slug is the run path's teacher level.
    pub spec: TeacherSpec,
    /// Weights of a network teacher (`best.safetensors` of a teacher run, or the file given).
    pub weights: Option<PathBuf>,
    /// Classes of a teacher run (from its config), to check against the dataset.
    pub classes: Option<usize>,
    /// `best:<dir>`: the run it picked and its best epoch.
    pub picked: Option<(PathBuf, BestRecord)>,
    /// A teacher run that is not finished (its best weights so far are used).
    pub unfinished: bool,
}

const EXPECTED: &str = "expected `baseline`, `human`, a teacher run directory (holding config.toml), a weights file (.safetensors or PyTorch; with --teacher-arch) or `best:<dir>`";

/// Resolves a [`TeacherChoice`]; relative paths are taken as they are (against the
/// current directory).
///
/// - `baseline`, `human`: no network;
/// - a run directory of hkd (it holds `config.toml`): its architecture from the config,
///   its `best.safetensors`, its slug ([`crate::RunSpec::teacher_slug`]);
/// - `best:<dir>`: the run [`best_run_under`] `dir` picks, as above;
/// - a weights file: architecture from `teacher_arch`, else the file's safetensors
///   metadata (`arch`, written by hkd), else the config of the run directory it lies in;
///   slug `<run slug>-<stem>` inside a run directory, else
///   `ckpt-<arch>-<stem>-<first 8 hex digits of the file's SHA-256>`.
///
/// Architecture names are not checked against the registry here (that needs `hkd-arch`):
/// the trainer checks them, and that a `teacher_arch` given for a teacher run agrees with
/// the run's config (aliases such as `shake26` = `shake26-2x64d` count as equal).
pub fn resolve_teacher(choice: &TeacherChoice) -> Result<ResolvedTeacher, RunDirError> {
    let teacher = choice.teacher.as_str();
    let teacher_arch = choice.teacher_arch.as_deref();
    let err = |reason: String| RunDirError::Teacher {
        teacher: teacher.to_string(),
        reason,
    };
    let bare = |spec| ResolvedTeacher {
        spec,
        weights: None,
        classes: None,
        picked: None,
        unfinished: false,
    };
    match teacher {
        "baseline" => return Ok(bare(TeacherSpec::Baseline)),
        "human" => return Ok(bare(TeacherSpec::Human)),
        _ => {}
    }
    if let Some(root) = teacher.strip_prefix("best:") {
        let root = Path::new(root);
        if !root.is_dir() {
            return Err(err(format!(
                "{} is not a directory; best:<dir> picks the best finished run under a grid's output directory",
                root.display()
            )));
        }
        let (run, record) = best_run_under(root).map_err(|e| match e {
            RunDirError::NoRuns(p) => err(format!(
                "no finished run with a best.json under {}; train the teachers first (or name one run directory)",
                p.display()
            )),
            other => err(other.to_string()),
        })?;
        let mut resolved = from_run_dir(teacher, run.path())?;
        resolved.picked = Some((run.path().to_path_buf(), record));
        return Ok(resolved);
    }
    let path = Path::new(teacher);
    if path.is_dir() {
        if !RunDir::new(path).has_config() {
            return Err(err(format!(
                "{} is a directory without config.toml, so not an hkd run; {EXPECTED}. To pick the best run under a grid directory use best:{}",
                path.display(),
                path.display()
            )));
        }
        return from_run_dir(teacher, path);
    }
    if path.is_file() {
        return from_weights_file(teacher, path, teacher_arch);
    }
    Err(err(if teacher.contains('/') || teacher.contains('.') {
        format!("{} does not exist; {EXPECTED}", path.display())
    } else {
        format!("not a known teacher and no such file or directory; {EXPECTED}")
    }))
}

fn from_run_dir(teacher: &str, dir: &Path) -> Result<ResolvedTeacher, RunDirError> {
    let err = |reason: String| RunDirError::Teacher {
        teacher: teacher.to_string(),
        reason,
    };
    let run = RunDir::new(dir);
    let config = run.read_config().map_err(|e| err(e.to_string()))?;
    let weights = run.file(RunDir::BEST_WEIGHTS);
    if !weights.is_file() {
        return Err(err(format!(
            "{} is missing: the teacher run has not finished an epoch yet; train it first",
            weights.display()
        )));
    }
    Ok(ResolvedTeacher {
        spec: TeacherSpec::Run {
            slug: config.teacher_slug(),
            arch: config.spec.student.clone(),
            dir: absolute(dir),
        },
        weights: Some(weights),
        classes: Some(config.classes),
        picked: None,
        unfinished: !run.is_finished(),
    })
}

fn from_weights_file(
    teacher: &str,
    path: &Path,
    teacher_arch: Option<&str>,
) -> Result<ResolvedTeacher, RunDirError> {
    let err = |reason: String| RunDirError::Teacher {
        teacher: teacher.to_string(),
        reason,
    };
    let bytes =
        std::fs::read(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    let parent_run = path
        .parent()
        .map(RunDir::new)
        .filter(|r| r.has_config())
        .and_then(|r| r.read_config().ok());
    let arch = match teacher_arch {
        Some(a) => a.to_string(),
        None => match safetensors_arch(&bytes)
            .or_else(|| parent_run.as_ref().map(|c| c.spec.student.clone()))
        {
            Some(a) => a,
            None => {
                return Err(err(format!(
                    "{} does not say its architecture (no `arch` in safetensors metadata, not inside an hkd run directory); pass --teacher-arch NAME (`hkd-train models` lists them)",
                    path.display()
                )));
            }
        },
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let slug = match &parent_run {
        Some(config) => format!("{}-{}", config.teacher_slug(), sanitize(&stem)),
        None => {
            let digest = Sha256::digest(&bytes);
            let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("ckpt-{}-{}-{short}", sanitize(&arch), sanitize(&stem))
        }
    };
    Ok(ResolvedTeacher {
        spec: TeacherSpec::Checkpoint {
            path: absolute(path),
            arch,
            slug,
        },
        weights: Some(path.to_path_buf()),
        classes: parent_run.map(|c| c.classes),
        picked: None,
        unfinished: false,
    })
}

/// The `arch` entry of a safetensors file's metadata (hkd writes it), if any.
fn safetensors_arch(bytes: &[u8]) -> Option<String> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    let value: serde_json::Value = serde_json::from_slice(header).ok()?;
    value
        .get("__metadata__")?
        .get("arch")?
        .as_str()
        .map(str::to_string)
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "weights".into()
    } else {
        out
    }
}

/// `path` made absolute: canonical when it exists, else joined to the current directory.
pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(teacher: &str, arch: Option<&str>) -> TeacherChoice {
        TeacherChoice {
            teacher: teacher.into(),
            teacher_arch: arch.map(str::to_string),
        }
    }

    #[test]
    fn keywords_and_missing_paths() {
        assert_eq!(
            resolve_teacher(&choice("human", None)).unwrap().spec,
            TeacherSpec::Human
        );
        assert_eq!(
            resolve_teacher(&choice("baseline", None)).unwrap().spec,
            TeacherSpec::Baseline
        );
        let msg = resolve_teacher(&choice("/no/such/teacher", None))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/no/such/teacher") && msg.contains("does not exist"),
            "{msg}"
        );
        let msg = resolve_teacher(&choice("humann", None))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not a known teacher"), "{msg}");
    }

    #[test]
    fn directories_that_are_not_runs_and_empty_grids() {
        let dir = tempfile::tempdir().unwrap();
        let msg = resolve_teacher(&choice(dir.path().to_str().unwrap(), None))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("without config.toml") && msg.contains("best:"),
            "{msg}"
        );
        let msg = resolve_teacher(&choice(&format!("best:{}", dir.path().display()), None))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no finished run"), "{msg}");
    }

    #[test]
    fn weights_file_without_architecture_asks_for_teacher_arch() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("teacher.pth");
        std::fs::write(&f, b"not a checkpoint").unwrap();
        let msg = resolve_teacher(&choice(f.to_str().unwrap(), None))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--teacher-arch"), "{msg}");
        let t = resolve_teacher(&choice(f.to_str().unwrap(), Some("resnet20"))).unwrap();
        match t.spec {
            TeacherSpec::Checkpoint { arch, slug, .. } => {
                assert_eq!(arch, "resnet20");
                assert!(slug.starts_with("ckpt-resnet20-teacher-"), "{slug}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn safetensors_metadata_gives_the_architecture() {
        let header = br#"{"__metadata__":{"arch":"resnet8"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        assert_eq!(safetensors_arch(&bytes).as_deref(), Some("resnet8"));
        assert_eq!(safetensors_arch(&bytes[..12]), None);
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(header);
        assert_eq!(safetensors_arch(&huge), None);
    }
}
