//! Fake hkd binaries for tests: shell scripts that record their argv and run a body.
//! Shared by hkd-slurm's tests (`support/mod.rs`) and hkd-grid's (`tests/common`, through
//! `#[path]`), so both test the same fakes. What a grid may set is known in-process
//! (`hkd_rundir::cli`), so the fakes need no help text.

use std::path::{Path, PathBuf};

/// A fake executable in `dir/bin/<name>`: it records its arguments (NUL-separated, one
/// call per file) under `dir/calls/` and runs `body` (bash, with the arguments in "$@").
pub struct Fake {
    pub root: PathBuf,
    pub path: PathBuf,
}

impl Fake {
    pub fn new(root: &Path, name: &str, body: &str) -> Fake {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(root.join("calls")).unwrap();
        let path = bin.join(name);
        let calls = root.join("calls");
        let script = format!(
            "#!/bin/bash\nf={calls}/call-$(date +%s%N)-$$\nprintf '%s\\0' \"$@\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n{body}\n",
            calls = shlex::try_quote(&calls.to_string_lossy()).unwrap(),
        );
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake {
            root: root.to_path_buf(),
            path,
        }
    }

    /// Every recorded call's argv, in call order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.join("calls"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).unwrap();
                let text = String::from_utf8(bytes).unwrap();
                text.split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }
}
