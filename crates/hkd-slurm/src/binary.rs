//! Finding the hkd binaries and asking them for their flags.
//!
//! The clap definition of each binary is the source of truth for what a grid may set:
//! hkd-grid runs `<binary> [subcommand] --help` and reads the long flags, whether they
//! take a value, their defaults and their possible values from clap's help text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::BinaryName;
use crate::error::{GridError, Result};

/// Environment variable naming a directory searched first for the hkd binaries.
pub const BIN_DIR_ENV: &str = "HKD_BIN_DIR";

/// What the help text says about one long flag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlagInfo {
    /// `--flag <VALUE>` (true) or a switch `--flag` (false).
    pub takes_value: bool,
    /// `[default: …]`, if shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `[possible values: …]` or a "Possible values:" list, if shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub possible_values: Vec<String>,
}

/// A located binary and its flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryInfo {
    pub name: BinaryName,
    /// Absolute path of the executable the tasks run.
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<String>,
    /// Long flags without the dashes.
    pub flags: BTreeMap<String, FlagInfo>,
}

impl BinaryInfo {
    /// Locates `name` ([`locate`]) and asks it for its flags ([`BinaryInfo::ask`]).
    pub fn find(name: BinaryName, subcommand: Option<&str>) -> Result<BinaryInfo> {
        let path = locate(name.file_name())?;
        Self::ask(name, &path, subcommand)
    }

    /// Runs `path [subcommand] --help` and parses clap's help text.
    pub fn ask(name: BinaryName, path: &Path, subcommand: Option<&str>) -> Result<BinaryInfo> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut cmd = Command::new(&path);
        if let Some(sub) = subcommand {
            cmd.arg(sub);
        }
        cmd.arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!(
            "{}{} --help",
            path.display(),
            subcommand.map(|s| format!(" {s}")).unwrap_or_default()
        );
        let output = run_with_timeout(cmd, Duration::from_secs(60)).map_err(|e| {
            GridError::Binary(format!("cannot run `{shown}` to learn its flags: {e}"))
        })?;
        if !output.status.success() {
            return Err(GridError::Binary(format!(
                "`{shown}` exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let flags = parse_help(&text);
        if !flags.contains_key("help") {
            return Err(GridError::Binary(format!(
                "`{shown}` did not print clap help (no --help flag listed); is {} an hkd binary?",
                path.display()
            )));
        }
        Ok(BinaryInfo {
            name,
            path,
            subcommand: subcommand.map(str::to_string),
            flags,
        })
    }

    /// The value a task uses for `flag`: its own value or the binary's default.
    pub fn default_of(&self, flag: &str) -> Option<&str> {
        self.flags.get(flag).and_then(|f| f.default.as_deref())
    }
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> std::io::Result<std::process::Output> {
    let mut child = cmd.spawn()?;
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// Finds the executable `file_name`: only in `$HKD_BIN_DIR` when that is set (an explicit
/// choice is never silently replaced by another build), else next to the running
/// executable (the way `cargo build` lays out `target/<profile>/`), then on `PATH`.
pub fn locate(file_name: &str) -> Result<PathBuf> {
    let mut looked = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let candidate = PathBuf::from(dir).join(file_name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        return Err(GridError::Binary(format!(
            "{file_name} not found: ${BIN_DIR_ENV} is set and {} is not an executable file. \
             Build it (`cargo build --release -p {file_name}`) into that folder, or unset \
             {BIN_DIR_ENV} to use the binaries next to hkd-grid or on PATH",
            candidate.display()
        )));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join(file_name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        looked.push(format!(
            "next to {} ({})",
            exe.display(),
            candidate.display()
        ));
    }
    if let Some(found) = find_on_path(file_name) {
        return Ok(found);
    }
    looked.push("on PATH".into());
    Err(GridError::Binary(format!(
        "{file_name} not found: looked {}. Build it (`cargo build --release -p {file_name}`) \
         and run the hkd-grid next to it, put it on PATH, or set {BIN_DIR_ENV}",
        looked.join(", ")
    )))
}

/// The first executable `file_name` on `PATH`.
pub fn find_on_path(file_name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(file_name))
        .find(|c| is_executable(c))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Parses clap's `--help` (or `-h`) output into long flags.
///
/// Reads option lines (`  -t, --teacher <TEACHER>`, `      --resume`), then from the
/// text until the next option: `[default: X]`, `[possible values: a, b]` and clap's long
/// "Possible values:" lists (`- a: …`).
pub fn parse_help(text: &str) -> BTreeMap<String, FlagInfo> {
    let mut flags: BTreeMap<String, FlagInfo> = BTreeMap::new();
    // each flag's description, its lines joined with spaces (clap wraps long help, also
    // in the middle of "[default: …]")
    let mut descriptions: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_possible_list = false;
    for line in text.lines() {
        let trimmed = line.trim();
        let indent = line.len() - line.trim_start().len();
        if indent <= 8
            && let Some((name, takes_value, rest)) = parse_option_line(trimmed)
        {
            flags.entry(name.clone()).or_default().takes_value = takes_value;
            descriptions.insert(name.clone(), rest.to_string());
            current = Some(name);
            in_possible_list = false;
            continue;
        }
        if indent == 0 && !trimmed.is_empty() {
            // a section heading ("Options:", "Commands:", "Usage: …")
            current = None;
            in_possible_list = false;
            continue;
        }
        let Some(name) = &current else { continue };
        if trimmed.is_empty() {
            in_possible_list = false;
            continue;
        }
        if trimmed.starts_with("Possible values:") {
            in_possible_list = true;
            continue;
        }
        if in_possible_list {
            if let Some(item) = trimmed.strip_prefix("- ")
                && let Some(info) = flags.get_mut(name)
            {
                let value = item.split(':').next().unwrap_or("").trim();
                if !value.is_empty() && !info.possible_values.iter().any(|v| v == value) {
                    info.possible_values.push(value.to_string());
                }
            }
            continue;
        }
        if let Some(desc) = descriptions.get_mut(name) {
            if !desc.is_empty() {
                desc.push(' ');
            }
            desc.push_str(trimmed);
        }
    }
    for (name, desc) in &descriptions {
        if let Some(info) = flags.get_mut(name) {
            scan_annotations(desc, info);
        }
    }
    flags
}

/// `-t, --teacher <TEACHER>  text…` → ("teacher", true, "text…").
fn parse_option_line(trimmed: &str) -> Option<(String, bool, &str)> {
    let mut rest = trimmed;
    // optional short flag: "-t, "
    let bytes = rest.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'-' && bytes[1] != b'-' {
        if !(bytes[1] as char).is_ascii_alphanumeric() {
            return None;
        }
        rest = &rest[2..];
        rest = rest.strip_prefix(", ")?;
    }
    let after = rest.strip_prefix("--")?;
    let end = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(after.len());
    let name = &after[..end];
    if name.is_empty() {
        return None;
    }
    let tail = &after[end..];
    let takes_value = tail.starts_with(" <")
        || tail.starts_with("=<")
        || tail.starts_with(" [<")
        || tail.starts_with("[=<");
    // the description in short help follows two or more spaces
    let desc = match tail.find("  ") {
        Some(i) => tail[i..].trim(),
        None => "",
    };
    Some((name.to_string(), takes_value, desc))
}

fn scan_annotations(text: &str, info: &mut FlagInfo) {
    if let Some(v) = bracketed(text, "[default: ") {
        info.default = Some(v.to_string());
    }
    if let Some(v) = bracketed(text, "[possible values: ") {
        for value in v.split(',') {
            let value = value.trim();
            if !value.is_empty() && !info.possible_values.iter().any(|p| p == value) {
                info.possible_values.push(value.to_string());
            }
        }
    }
}

fn bracketed<'a>(text: &'a str, open: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(']')? + start;
    Some(&text[start..end])
}

/// The known flag closest to `unknown` (edit distance ≤ 3, or equal after `_`→`-`).
pub fn suggest<'a>(unknown: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let normalized = unknown.replace('_', "-").to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for k in known {
        let d = if *k == normalized {
            0
        } else {
            edit_distance(&normalized, k)
        };
        if d <= 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k.as_str()));
        }
    }
    best.map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_HELP: &str = "\
Train one network (teacher or student)

Usage: hkd-train [OPTIONS] --out <OUT>

Options:
      --out <OUT>
          Master output directory

  -t, --teacher <TEACHER>
          `baseline`, `human`, a run dir, or best:<dir>

          [default: baseline]

      --distil-fn <DISTIL_FN>
          Divergence of the soft terms

          Possible values:
          - KL: Kullback-Leibler divergence
          - CE: soft cross-entropy

          [default: KL]

      --lambda <LAMBDA>
          Weight of the soft term
          - not a flag line, a bullet in the text

          [default: 0.5]

      --scheduler <SCHEDULER>
          [default: plateau]
          [possible values: plateau, step, cosine]

      --resume
          Continue from last.*

  -h, --help
          Print help (see a summary with '-h')
";

    const SHORT_HELP: &str = "\
Usage: hkd-analyze [OPTIONS] <DIR>

Arguments:
  <DIR>  Directory with runs

Options:
      --out <OUT>           Output directory [default: analysis]
      --group-by <COLUMN>   Columns to group by
      --parquet             Also write Parquet
  -h, --help                Print help
  -V, --version             Print version
";

    #[test]
    fn long_help_gives_flags_defaults_and_possible_values() {
        let flags = parse_help(LONG_HELP);
        let names: Vec<&str> = flags.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "distil-fn",
                "help",
                "lambda",
                "out",
                "resume",
                "scheduler",
                "teacher"
            ]
        );
        assert!(flags["out"].takes_value);
        assert_eq!(flags["out"].default, None);
        assert_eq!(flags["teacher"].default.as_deref(), Some("baseline"));
        assert_eq!(flags["distil-fn"].possible_values, ["KL", "CE"]);
        assert_eq!(flags["distil-fn"].default.as_deref(), Some("KL"));
        assert_eq!(flags["lambda"].default.as_deref(), Some("0.5"));
        assert!(flags["lambda"].possible_values.is_empty());
        assert_eq!(
            flags["scheduler"].possible_values,
            ["plateau", "step", "cosine"]
        );
        assert!(!flags["resume"].takes_value);
        assert!(!flags["help"].takes_value);
    }

    #[test]
    fn defaults_wrapped_across_lines_are_read() {
        let help = "Options:\n      --plateau-factor <PLATEAU_FACTOR>\n          plateau: factor applied to the learning rate on a plateau of validation accuracy [default:\n          0.9]\n      --threads <N>\n          CPU threads\n  -h, --help\n          Print help\n";
        let flags = parse_help(help);
        assert_eq!(flags["plateau-factor"].default.as_deref(), Some("0.9"));
        assert_eq!(flags["threads"].default, None);
        assert!(flags["threads"].takes_value);
    }

    #[test]
    fn short_help_gives_flags_and_inline_defaults() {
        let flags = parse_help(SHORT_HELP);
        let names: Vec<&str> = flags.keys().map(String::as_str).collect();
        assert_eq!(names, ["group-by", "help", "out", "parquet", "version"]);
        assert_eq!(flags["out"].default.as_deref(), Some("analysis"));
        assert!(flags["group-by"].takes_value);
        assert!(!flags["parquet"].takes_value);
    }

    #[test]
    fn suggestions_find_near_misses() {
        let known: Vec<String> = ["lambda", "distil-fn", "temperature-human"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(suggest("lamda", known.iter()), Some("lambda"));
        assert_eq!(suggest("distil_fn", known.iter()), Some("distil-fn"));
        assert_eq!(suggest("zzzzzzzz", known.iter()), None);
    }
}
