//! Fake hkd binaries for tests: shell scripts that print clap-like help and record their
//! argv. Shared by hkd-slurm's tests (`support/mod.rs`) and hkd-grid's (`tests/common`,
//! through `#[path]`), so both test the same fakes.

use std::path::{Path, PathBuf};

/// clap's long help of a binary with hkd-train's grid-relevant flags and defaults.
pub const TRAIN_HELP: &str = "\
Train one hkd run

Usage: hkd-train [OPTIONS] [COMMAND]

Commands:
  models  List the architectures
  flags   Print the long names of the training flags
  help    Print this message or the help of the given subcommand(s)

Options:
      --config <FILE>
          TOML file with any of the settings below

      --out <DIR>
          Master output directory

          [default: runs]

      --data <DIR>
          Dataset directory

          [default: data]

      --teacher <TEACHER>
          Soft labels: baseline, human, a run directory or best:<dir>

          [default: human]

      --student <ARCH>
          [default: resnet8]

      --seed <SEED>
          [default: 0]

      --iter <ITER>
          [default: 0]

      --lambda <LAMBDA>
          [default: 0.5]

      --gamma <GAMMA>
          [default: 0]

      --temperature-teacher <T>
          [default: 1]

      --temperature-human <T>
          [default: 1]

      --distil-fn <KL|CE>
          [default: KL]

      --epochs <EPOCHS>
          [default: 500]

      --threads <N>
          CPU threads [default: all cores]

      --resume
          Continue the run from its last checkpoint

      --overwrite
          Delete an existing run and start again

  -h, --help
          Print help (see a summary with '-h')

  -V, --version
          Print version
";

/// A fake executable in `dir/bin/<name>`: `--help` prints `help`; otherwise it appends
/// its arguments (NUL-separated, one call per file) under `dir/calls/` and runs `body`
/// (bash, with the arguments in "$@").
pub struct Fake {
    pub root: PathBuf,
    pub path: PathBuf,
}

impl Fake {
    pub fn new(root: &Path, name: &str, help: &str, body: &str) -> Fake {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(root.join("calls")).unwrap();
        let path = bin.join(name);
        let calls = root.join("calls");
        let script = format!(
            "#!/bin/bash\nif [ \"${{1:-}}\" = --help ]; then cat <<'HELP_EOF'\n{help}HELP_EOF\nexit 0; fi\n\
             f={calls}/call-$(date +%s%N)-$$\nprintf '%s\\0' \"$@\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n{body}\n",
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
