//! Every file hkd-grid writes is created 0666 minus the umask (scripts 0777 minus the
//! umask), like any other tool's output (docs/README.md, "Files and permissions"): the
//! real binary runs under umask 022, 002 and 077, writing an array grid and a multiprog
//! grid (dry runs: manifest.json, tasks.txt, the job scripts, task.sh, the .conf) and
//! running a local grid (state files, logs).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{Fake, only_grid, run};

/// `hkd-grid ARGS…` started by `sh` after `umask MASK`.
fn hkd_grid_under_umask(mask: &str, work: &Path, fake: &Fake) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("umask {mask} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_hkd-grid"),
    ])
    .current_dir(work)
    .env("HKD_BIN_DIR", fake.path.parent().unwrap())
    .env_remove("SLURM_JOB_ID")
    .env_remove("SLURM_ARRAY_JOB_ID")
    .env_remove("SLURM_ARRAY_TASK_ID");
    cmd
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every entry under `dir` (itself included) with its mode, and the temporary files left.
fn modes_under(dir: &Path) -> Vec<(String, u32, bool)> {
    let mut out = vec![(dir.display().to_string(), mode(dir), true)];
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(modes_under(&p));
        } else {
            out.push((p.display().to_string(), mode(&p), false));
        }
    }
    out
}

/// Checks every file and directory of `grid`: scripts (`*.sh`) `exe`, other files
/// `file`, directories `dir`; no `.hkd-*.tmp` is left. Returns the file names seen.
fn check_grid(grid: &Path, file: u32, exe: u32, dir: u32, what: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (path, m, is_dir) in modes_under(grid) {
        let name = Path::new(&path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            !(name.starts_with(".hkd") && name.ends_with(".tmp")),
            "{what}: a temporary file is left: {path}"
        );
        let expected = if is_dir {
            dir
        } else if name.ends_with(".sh") {
            exe
        } else {
            file
        };
        assert_eq!(
            m, expected,
            "{what}: {path} is {m:o}, expected {expected:o}"
        );
        if !is_dir {
            names.push(name);
        }
    }
    names.sort();
    names
}

#[test]
fn grid_files_honour_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::new(tmp.path(), "hkd-train", "exit 0");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for (name, slurm) in [
        // max_array_size given: no `scontrol` is asked (a stopped controller makes it wait)
        ("array", "mode = \"array\"\nmax_array_size = 1001\n"),
        (
            "multiprog",
            "mode = \"multiprog\"\ntasks_per_job = 2\nmax_array_size = 1001\n",
        ),
    ] {
        std::fs::write(
            work.join(format!("{name}.toml")),
            format!(
                "binary = \"hkd-train\"\n[grid]\nteacher = \"human\"\niter = [0, 1, 2]\n[slurm]\n{slurm}"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        work.join("local.toml"),
        "binary = \"hkd-train\"\nexecutor = \"local\"\n[grid]\nteacher = \"human\"\niter = [0, 1]\n",
    )
    .unwrap();

    for (mask, file, exe, dir) in [
        ("022", 0o644, 0o755, 0o755),
        ("002", 0o664, 0o775, 0o775),
        ("077", 0o600, 0o700, 0o700),
    ] {
        for config in ["array", "multiprog"] {
            let what = format!("umask {mask}, {config} dry run");
            let grids = tmp.path().join(format!("grids-{mask}-{config}"));
            let (code, _, stderr) = run(hkd_grid_under_umask(mask, &work, &fake).args([
                &format!("{config}.toml"),
                "--dry-run",
                "--executor",
                "slurm",
                "--grids-dir",
                grids.to_str().unwrap(),
            ]));
            assert_eq!(code, 0, "{what}: {stderr}");
            let names = check_grid(&only_grid(&grids), file, exe, dir, &what);
            let expected: &[&str] = match config {
                "array" => &["job-0-0.sh", "manifest.json", "tasks.txt"],
                _ => &[
                    "job-0-0.conf",
                    "job-0-0.sh",
                    "job-0-1.conf",
                    "job-0-1.sh",
                    "manifest.json",
                    "task.sh",
                    "tasks.txt",
                ],
            };
            assert_eq!(names, expected, "{what}");
        }

        let what = format!("umask {mask}, local run");
        let grids = tmp.path().join(format!("grids-{mask}-local"));
        let (code, _, stderr) = run(hkd_grid_under_umask(mask, &work, &fake).args([
            "local.toml",
            "--grids-dir",
            grids.to_str().unwrap(),
        ]));
        assert_eq!(code, 0, "{what}: {stderr}");
        let names = check_grid(&only_grid(&grids), file, exe, dir, &what);
        assert_eq!(
            names,
            [
                "manifest.json",
                "task-0.json",
                "task-0.log",
                "task-1.json",
                "task-1.log",
                "tasks.txt"
            ],
            "{what}"
        );
    }
}
