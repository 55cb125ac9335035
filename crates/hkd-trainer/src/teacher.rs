//! Loading the teacher network of a resolved `--teacher` (the resolution itself is
//! `hkd_rundir::resolve_teacher`, shared with `hkd-grid`).

use candle_core::{DType, Device};
use hkd_arch::Network;
use hkd_rundir::{ResolvedTeacher, RunSpec, TeacherSpec};

use crate::error::{Result, TrainError};

/// Checks what `hkd_rundir::resolve_teacher` leaves to the trainer: the teacher's
/// architecture is a known one, and a `--teacher-arch` given for a teacher run agrees
/// with the run's config (aliases such as `shake26` = `shake26-2x64d` count as equal).
pub fn check_teacher_arch(spec: &RunSpec, teacher: &ResolvedTeacher) -> Result<()> {
    let err = |reason: String| TrainError::Teacher {
        teacher: spec.teacher.teacher.clone(),
        reason,
    };
    let Some(arch) = teacher.spec.arch() else {
        return Ok(());
    };
    hkd_arch::ArchSpec::parse(arch).map_err(|e| err(format!("architecture `{arch}`: {e}")))?;
    if let (TeacherSpec::Run { .. }, Some(given)) = (&teacher.spec, &spec.teacher.teacher_arch)
        && !same_arch(given, arch)
    {
        return Err(err(format!(
            "--teacher-arch {given} contradicts the teacher run's config.toml (student = {arch}); leave --teacher-arch out for run directories"
        )));
    }
    Ok(())
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

fn same_arch(a: &str, b: &str) -> bool {
    match (hkd_arch::ArchSpec::parse(a), hkd_arch::ArchSpec::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
