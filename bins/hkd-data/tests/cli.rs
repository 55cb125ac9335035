//! The `hkd-data` binary's files, log and errors (docs/README.md, "Exit codes" and "Files
//! and permissions"):
//! - a dataset it writes (`dataset.toml`, the `.npy` arrays, their directories) is
//!   created 0666 (0777) minus the umask: 0644 under umask 022, 0664 under 002;
//! - its log is plain text when stderr is not a terminal, coloured on a terminal unless
//!   `NO_COLOR` is set;
//! - a corrupt input exits 2, a missing input file 2, an unknown flag 2; errors start with
//!   `hkd-data: error: `.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hkd_test_support::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_hkd-data");

/// A scratch directory under cargo's per-target scratch space, removed when dropped.
fn scratch(test: &str) -> Scratch {
    Scratch::new(env!("CARGO_TARGET_TMPDIR"), &format!("hkd-data-{test}"))
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cifar10h-mini")
}

/// `hkd-data subset` of the fixture's val split (one image per class) into `out`.
fn subset_args(out: &Path) -> Vec<String> {
    [
        "subset",
        "--from",
        fixture().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--split",
        "val",
        "--per-class",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn hkd_data(args: &[String]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("NO_COLOR").env_remove("RUST_LOG");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every entry under `dir` (itself included): (path, mode, is a directory).
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = vec![(dir.to_path_buf(), mode(dir), true)];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(modes_under(&p));
        } else {
            out.push((p.clone(), mode(&p), false));
        }
    }
    out
}

#[test]
fn a_written_dataset_honours_the_umask() {
    let scratch = scratch("umask");
    for (mask, file, dir) in [
        ("022", 0o644, 0o755),
        ("002", 0o664, 0o775),
        ("077", 0o600, 0o700),
    ] {
        let out = scratch.path().join(format!("out-{mask}"));
        // twice: the second run replaces dataset.toml and every array
        for round in 0..2 {
            let o = Command::new("sh")
                .args(["-c", &format!("umask {mask} && exec \"$0\" \"$@\""), BIN])
                .args(subset_args(&out))
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "umask {mask}, round {round}: {}",
                text(&o.stderr)
            );
        }
        let entries = modes_under(&out);
        let mut files: Vec<String> = Vec::new();
        for (path, m, is_dir) in &entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp"),
                "a temporary file is left: {}",
                path.display()
            );
            let expected = if *is_dir { dir } else { file };
            assert_eq!(
                *m,
                expected,
                "umask {mask}: {} is {m:o}, expected {expected:o}",
                path.display()
            );
            if !is_dir {
                files.push(
                    path.strip_prefix(&out)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        files.sort();
        assert!(
            files.contains(&"dataset.toml".to_string())
                && files.iter().any(|f| f.ends_with(".npy")),
            "umask {mask}: {files:?}"
        );
    }
}

/// `BIN` on a pseudo-terminal; `None` where `script` (util-linux) is missing.
fn on_a_terminal(args: &[String], no_color: bool) -> Option<Output> {
    hkd_test_support::on_a_terminal(BIN, args, no_color)
}

const ESC: &str = "\x1b[";

#[test]
fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
    let scratch = scratch("colour");
    // stderr to a pipe (a redirected log): plain text
    let o = hkd_data(&subset_args(&scratch.path().join("piped")))
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("wrote split"), "a log line is expected: {err}");
    assert!(
        !err.contains(ESC),
        "colour codes in a redirected log: {err:?}"
    );
    // an error, redirected: plain text too
    let o = hkd_data(&[
        "inspect".to_string(),
        scratch.path().join("missing").display().to_string(),
    ])
    .output()
    .unwrap();
    let err = text(&o.stderr);
    assert!(err.starts_with("hkd-data: error: "), "{err}");
    assert!(!err.contains(ESC), "{err:?}");

    // on a terminal: coloured, unless NO_COLOR is set
    let Some(o) = on_a_terminal(&subset_args(&scratch.path().join("tty")), false) else {
        hkd_test_support::skip(
            "the terminal half",
            "`script` (util-linux) is not installed",
        );
        return;
    };
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("wrote split"), "{out}");
    assert!(out.contains(ESC), "no colour on a terminal: {out:?}");
    let o = on_a_terminal(&subset_args(&scratch.path().join("no-color")), true).unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("wrote split"), "{out}");
    assert!(!out.contains(ESC), "colour despite NO_COLOR: {out:?}");
}

/// The first line of stderr, checked to be an hkd-data error without colour codes.
fn error_line(o: &Output) -> String {
    let err = text(&o.stderr);
    assert!(
        err.starts_with("hkd-data: error: "),
        "errors start with `hkd-data: error: `: {err}"
    );
    assert!(!err.contains(ESC), "{err:?}");
    err.lines().next().unwrap().to_string()
}

#[test]
fn exit_codes_follow_the_policy() {
    let scratch = scratch("codes");
    let dir = scratch.path();
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"PK\x03\x04 this is a zip file, not an array").unwrap();
    let import = |images: &Path, labels: &Path| -> Vec<String> {
        [
            "import",
            "npy",
            "--out",
            dir.join("out").to_str().unwrap(),
            "--split",
            "train",
            "--images",
            images.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let labels = fixture().join("val/labels.npy");

    // a corrupt input: refused, 2
    let o = hkd_data(&import(&garbage, &labels)).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let line = error_line(&o);
    assert!(
        line.contains("garbage.npy") && line.contains("not a readable .npy file"),
        "{line}"
    );
    // a corrupt dataset.toml: refused, 2
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("dataset.toml"), "name = = \"x\"\n").unwrap();
    let o = hkd_data(&["inspect".to_string(), broken.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(error_line(&o).contains("dataset.toml"));

    // an input file that is missing: refused before anything is written, 2
    let missing = dir.join("missing.npy");
    let o = hkd_data(&import(&missing, &labels)).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(error_line(&o).contains("missing.npy"));

    // an unknown flag: 2 (clap's usage error)
    let mut args = subset_args(&dir.join("out"));
    args.push("--no-such-flag".into());
    let o = hkd_data(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        !dir.join("out").exists(),
        "nothing is written by a refused command"
    );
}
