//! Test helpers shared by hkd's test suites — a dev-dependency only, never a dependency of
//! a library or binary. One place for what every suite needs from `../shared`:
//!
//! - [`reference_dir`]: `$HKD_REFERENCE_DIR` (default `<workspace>/../shared/reference`),
//!   or `None` after a loud `SKIPPED` line; under `CI=true` a missing directory fails.
//! - [`shared_data_for`] / [`shared_data`]: `$HKD_SHARED_DATA` (default
//!   `<workspace>/../shared/data`), with a loud skip / quietly.
//! - [`skip`]: the loud skip line for any other missing prerequisite.
//! - [`read_npy_f32`]: an f32 (or f64, converted) `.npy` with its shape;
//!   [`write_npy_raw`]: any `.npy` header over raw bytes.
//! - [`run_0_1`]: the text files of a finished hkd 0.1 run.
//! - [`cifar100`]: small CIFAR-100 files in the official python and binary formats.
//! - [`torch_checkpoint`]: PyTorch checkpoints (a state dict plus e.g. `epoch`, as
//!   RepDistiller's `ckpt_epoch_240.pth`) pickled as `torch.save` does, in its zip and
//!   legacy formats.
//! - [`Scratch`]: a scratch directory removed when dropped; [`on_a_terminal`]: a binary
//!   run on a pseudo-terminal (for the colour rules of the log).
#![deny(unsafe_code)]

pub mod cifar100;
mod pickler;
pub mod torch_checkpoint;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Prints `SKIPPED {test}: {why}` straight to stderr (libtest hides `eprintln!` output of
/// passing tests, so a skip would otherwise be silent).
pub fn skip(test: &str, why: &str) {
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("SKIPPED {test}: {why}\n"),
    );
}

/// The PyTorch reference directory, `$HKD_REFERENCE_DIR` or `<workspace>/../shared/reference`,
/// when `needs` (a path inside it, e.g. `torch/models`) exists there. Otherwise `None`
/// after a loud skip line naming `test`, or a panic when `CI=true` (CI must have it).
pub fn reference_dir(test: &str, needs: &str) -> Option<PathBuf> {
    locate(test, "HKD_REFERENCE_DIR", "../shared/reference", needs)
}

/// The real data, `$HKD_SHARED_DATA` or `<workspace>/../shared/data`, when `needs` exists
/// in it; otherwise `None` after a loud skip line, or a panic when `CI=true`.
pub fn shared_data_for(test: &str, needs: &str) -> Option<PathBuf> {
    locate(test, "HKD_SHARED_DATA", "../shared/data", needs)
}

/// `$HKD_SHARED_DATA` (default `<workspace>/../shared/data`), if it is a directory — for
/// tests that use it when present and say themselves what they do otherwise.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("HKD_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    dir.is_dir().then_some(dir)
}

fn locate(test: &str, var: &str, default: &str, needs: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(default));
    if dir.join(needs).exists() {
        return Some(dir);
    }
    let why = format!(
        "../shared not found: no {needs} in {} (set {var})",
        dir.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}; CI=true requires it");
    }
    skip(test, &why);
    None
}

/// Writes a .npy v1.0 file with a given descr (e.g. `<f4`, `>i8`, `|u1`), shape and raw
/// data bytes — also malformed ones, for the tests of the readers.
pub fn write_npy_raw(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape = match shape {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A fresh scratch directory `<base>/<name>-<pid>`, removed when dropped. Integration
/// tests pass `env!("CARGO_TARGET_TMPDIR")` as `base` (cargo's per-target scratch space,
/// which a library cannot name itself).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(base: &str, name: &str) -> Scratch {
        let path = Path::new(base).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Scratch(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `bin args…` on a pseudo-terminal with `script` (util-linux), `RUST_LOG` unset and
/// `NO_COLOR` set or unset as asked; `None` where `script` is missing (say so with [`skip`]).
pub fn on_a_terminal<S: AsRef<str>>(bin: &str, args: &[S], no_color: bool) -> Option<Output> {
    let available = Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        return None;
    }
    let line = std::iter::once(bin)
        .chain(args.iter().map(AsRef::as_ref))
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    Some(
        cmd.output()
            .unwrap_or_else(|e| panic!("running script: {e}")),
    )
}

/// The text files of a finished hkd 0.1 run (plane2 student of a human teacher, CE,
/// λ 0.25, T_h 2; 3 epochs, best epoch 2, plateau schedule, trainer state format 1), byte
/// for byte as hkd 0.1 wrote them: the tests that check today's readers still read old run
/// directories write these.
pub mod run_0_1 {
    /// The run name hkd 0.1 gave this run (its directory name).
    pub const NAME: &str = "student_plane2_distil_fn_CE_temperature_h_2.0_temperature_t_1.0_lambda_0.25_gamma_0.0_iter_1";
    pub const METRICS: &str = include_str!("../data/run-0.1/metrics.jsonl");
    pub const BEST: &str = include_str!("../data/run-0.1/best.json");
    pub const LAST: &str = include_str!("../data/run-0.1/last.json");

    /// `config.toml` as hkd 0.1 wrote it (its `RunConfig` through `toml::to_string_pretty`,
    /// no `[spec]` table), for a run that read its data from `data_dir` and validated on
    /// `val_split`.
    pub fn config(data_dir: &str, val_split: &str) -> String {
        include_str!("../data/run-0.1/config.toml.in")
            .replace("DATA_DIR", &format!("{data_dir:?}"))
            .replace("VAL_SPLIT", &format!("{val_split:?}"))
    }
}

/// Copies a directory tree (files and folders).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Flips the lowest bit of the fourth-last byte of a file: in a `.npy` of pixels one
/// pixel, in a safetensors file the lowest mantissa bit of its last float (never a NaN).
pub fn flip_a_low_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - 4;
    bytes[at] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

/// Reads an `.npy` of f32 values (f64 values are converted): (shape, values). Panics
/// with the path on any error (a test helper).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..])
        .unwrap_or_else(|e| panic!("{} is not a .npy file: {e}", path.display()));
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let is_f64 = matches!(npy.dtype(), npyz::DType::Plain(t) if t.size_field() == 8);
    let values = if is_f64 {
        npy.into_vec::<f64>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .into_iter()
            .map(|v| v as f32)
            .collect()
    } else {
        npy.into_vec::<f32>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    (shape, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_f32_and_f64_npy_with_their_shape() {
        let dir = std::env::temp_dir().join(format!("hkd-test-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f32_path = dir.join("a.npy");
        let values = [1f32, 2., 3., 4., 5., 6.5];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy_raw(&f32_path, "<f4", &[2, 3], &bytes);
        assert_eq!(read_npy_f32(&f32_path), (vec![2, 3], values.to_vec()));
        let f64_path = dir.join("b.npy");
        let bytes: Vec<u8> = [0.25f64, -1.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write_npy_raw(&f64_path, "<f8", &[2], &bytes);
        assert_eq!(read_npy_f32(&f64_path), (vec![2], vec![0.25, -1.5]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[allow(unsafe_code)] // std::env::set_var, below
    fn a_missing_reference_directory_is_a_loud_skip() {
        if std::env::var("CI").as_deref() == Ok("true") {
            return; // there it panics by design
        }
        // SAFETY: this test binary's only test touching the environment.
        unsafe { std::env::set_var("HKD_REFERENCE_DIR", "/nonexistent/hkd-reference") };
        assert_eq!(
            reference_dir("hkd-test-support self-test, expected", "torch/models"),
            None
        );
    }
}
