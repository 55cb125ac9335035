use crate::config::{DistilFn, RunConfig};

/// Formats a float the way Python's `str(float)` does for the values a grid uses:
/// `1.0`, `0.5`, `0.25`, `20.0` (so run names match the original project's).
pub fn py_float(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// The run directory name, in the original project's pattern:
/// `student_<arch>_distil_fn_<D>_temperature_h_<Th>_temperature_t_<Tt>_lambda_<λ>_gamma_<γ>_iter_<i>`.
pub fn run_name(
    student: &str,
    distil_fn: DistilFn,
    temperature_human: f64,
    temperature_teacher: f64,
    lambda: f64,
    gamma: f64,
    iter: u32,
) -> String {
    format!(
        "student_{student}_distil_fn_{distil_fn}_temperature_h_{}_temperature_t_{}_lambda_{}_gamma_{}_iter_{iter}",
        py_float(temperature_human),
        py_float(temperature_teacher),
        py_float(lambda),
        py_float(gamma),
    )
}

/// A readable slug naming a teacher run, used as the teacher level of its students' run
/// directories: `<teacher's own teacher slug>-<arch>-<D>-th<Th>-tt<Tt>-l<λ>-g<γ>-i<iter>`,
/// e.g. `human-resnet20-KL-th1.0-tt1.0-l1.0-g0.0-i0`.
pub fn teacher_slug(teacher: &RunConfig) -> String {
    let d = &teacher.distillation;
    format!(
        "{}-{}-{}-th{}-tt{}-l{}-g{}-i{}",
        teacher.teacher.slug(),
        teacher.student,
        d.distil_fn,
        py_float(d.temperature_human),
        py_float(d.temperature_teacher),
        py_float(d.lambda),
        py_float(d.gamma),
        teacher.iter
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_formatting() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.5), "0.5");
        assert_eq!(py_float(20.0), "20.0");
        assert_eq!(py_float(0.25), "0.25");
        assert_eq!(py_float(0.1), "0.1");
    }

    #[test]
    fn run_name_matches_the_original_pattern() {
        assert_eq!(
            run_name("resnet8", DistilFn::KL, 4.0, 1.0, 0.6, 0.5, 2),
            "student_resnet8_distil_fn_KL_temperature_h_4.0_temperature_t_1.0_lambda_0.6_gamma_0.5_iter_2"
        );
    }
}
