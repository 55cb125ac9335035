//! Resolving `--teacher` into a [`TeacherSpec`] and loading the teacher network.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use hkd_arch::Network;
use hkd_rundir::{RunConfig, RunDir, RunDirError, TeacherSpec, best_run_under, teacher_slug};
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};

/// A resolved `--teacher`: what the run's config records, and for a network teacher the
/// weights file to load.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTeacher {
    /// As written into the run's `config.toml`.
    pub spec: TeacherSpec,
    /// Weights of a network teacher (`best.safetensors` of a teacher run, or the file given).
    pub weights: Option<PathBuf>,
    /// Classes of a teacher run (from its config), checked against the dataset.
    pub classes: Option<usize>,
}

const EXPECTED: &str = "expected `baseline`, `human`, a teacher run directory (holding config.toml), a weights file (.safetensors or PyTorch; with --teacher-arch) or `best:<dir>`";

/// Resolves the value of `--teacher`:
///
/// - `baseline`, `human`: no network;
/// - a run directory of hkd (it holds `config.toml`): its architecture from the config,
///   its `best.safetensors`, the slug [`teacher_slug`] of its config;
/// - `best:<dir>`: the run [`best_run_under`] `dir` picks, as above;
/// - a weights file: architecture from `teacher_arch`, else the file's safetensors
///   metadata (`arch`, written by hkd), else the config of the run directory it lies in.
pub fn resolve_teacher(teacher: &str, teacher_arch: Option<&str>) -> Result<ResolvedTeacher> {
    let err = |reason: String| TrainError::Teacher {
        teacher: teacher.to_string(),
        reason,
    };
    match teacher {
        "baseline" => {
            return Ok(ResolvedTeacher {
                spec: TeacherSpec::Baseline,
                weights: None,
                classes: None,
            });
        }
        "human" => {
            return Ok(ResolvedTeacher {
                spec: TeacherSpec::Human,
                weights: None,
                classes: None,
            });
        }
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
        tracing::info!(
            "teacher best:{}: {} (best epoch {}, val_acc {:.4})",
            root.display(),
            run.path().display(),
            record.epoch,
            record.val_acc
        );
        return from_run_dir(teacher, run.path(), teacher_arch);
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
        return from_run_dir(teacher, path, teacher_arch);
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

fn from_run_dir(teacher: &str, dir: &Path, teacher_arch: Option<&str>) -> Result<ResolvedTeacher> {
    let err = |reason: String| TrainError::Teacher {
        teacher: teacher.to_string(),
        reason,
    };
    let run = RunDir::new(dir);
    let config: RunConfig = run.read_config().map_err(|e| err(e.to_string()))?;
    if let Some(arch) = teacher_arch
        && !same_arch(arch, &config.student)
    {
        return Err(err(format!(
            "--teacher-arch {arch} contradicts the teacher run's config.toml (student = {}); leave --teacher-arch out for run directories",
            config.student
        )));
    }
    let weights = run.file(RunDir::BEST_WEIGHTS);
    if !weights.is_file() {
        return Err(err(format!(
            "{} is missing: the teacher run has not finished an epoch yet; train it first",
            weights.display()
        )));
    }
    if !run.is_finished() {
        tracing::warn!(
            "teacher run {} is not finished; using its best weights so far",
            dir.display()
        );
    }
    let dir = absolute(dir);
    Ok(ResolvedTeacher {
        spec: TeacherSpec::Run {
            slug: teacher_slug(&config),
            arch: config.student.clone(),
            dir,
        },
        weights: Some(weights),
        classes: Some(config.classes),
    })
}

fn from_weights_file(
    teacher: &str,
    path: &Path,
    teacher_arch: Option<&str>,
) -> Result<ResolvedTeacher> {
    let err = |reason: String| TrainError::Teacher {
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
            .or_else(|| parent_run.as_ref().map(|c| c.student.clone()))
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
    hkd_arch::ArchSpec::parse(&arch).map_err(|e| err(format!("architecture `{arch}`: {e}")))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let slug = match &parent_run {
        Some(config) => format!("{}-{}", teacher_slug(config), sanitize(&stem)),
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
    })
}

/// Builds the teacher network of a resolved teacher and loads its weights (evaluation
/// only: the trainer calls [`Network::forward_eval`], which builds no gradient graph).
pub fn load_teacher(
    teacher: &ResolvedTeacher,
    classes: usize,
    device: &Device,
) -> Result<Option<Network>> {
    let (Some(arch), Some(weights)) = (teacher.spec.arch(), &teacher.weights) else {
        return Ok(None);
    };
    if let Some(c) = teacher.classes
        && c != classes
    {
        return Err(TrainError::Teacher {
            teacher: weights.display().to_string(),
            reason: format!(
                "the teacher has {c} classes, the dataset {classes}; use a teacher trained on this dataset"
            ),
        });
    }
    let net = Network::new(arch, classes, device, DType::F32, 0)
        .map_err(|e| TrainError::arch(format!("building teacher {arch}"), e))?;
    net.load_weights(weights).map_err(|e| TrainError::Teacher {
        teacher: weights.display().to_string(),
        reason: format!("cannot load it as {arch}: {e}"),
    })?;
    Ok(Some(net))
}

fn safetensors_arch(bytes: &[u8]) -> Option<String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    meta.metadata().as_ref()?.get("arch").cloned()
}

fn same_arch(a: &str, b: &str) -> bool {
    match (hkd_arch::ArchSpec::parse(a), hkd_arch::ArchSpec::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
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

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_missing_paths() {
        assert_eq!(
            resolve_teacher("human", None).unwrap().spec,
            TeacherSpec::Human
        );
        assert_eq!(
            resolve_teacher("baseline", None).unwrap().spec,
            TeacherSpec::Baseline
        );
        let msg = resolve_teacher("/no/such/teacher", None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/no/such/teacher") && msg.contains("does not exist"),
            "{msg}"
        );
        let msg = resolve_teacher("humann", None).unwrap_err().to_string();
        assert!(msg.contains("not a known teacher"), "{msg}");
    }

    #[test]
    fn directories_that_are_not_runs_and_empty_grids() {
        let dir = tempfile::tempdir().unwrap();
        let msg = resolve_teacher(dir.path().to_str().unwrap(), None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("without config.toml") && msg.contains("best:"),
            "{msg}"
        );
        let msg = resolve_teacher(&format!("best:{}", dir.path().display()), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no finished run"), "{msg}");
    }

    #[test]
    fn weights_file_without_architecture_asks_for_teacher_arch() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("teacher.pth");
        std::fs::write(&f, b"not a checkpoint").unwrap();
        let msg = resolve_teacher(f.to_str().unwrap(), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--teacher-arch"), "{msg}");
        let t = resolve_teacher(f.to_str().unwrap(), Some("resnet20")).unwrap();
        match t.spec {
            TeacherSpec::Checkpoint { arch, slug, .. } => {
                assert_eq!(arch, "resnet20");
                assert!(slug.starts_with("ckpt-resnet20-teacher-"), "{slug}");
            }
            other => panic!("{other:?}"),
        }
    }
}
