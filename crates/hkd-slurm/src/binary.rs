//! Finding the hkd binaries. What a grid may set is not asked from the binaries: their
//! command lines are defined in `hkd_rundir::cli` and parsed in-process
//! ([`BinaryName::command`], [`crate::grid::expand`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::BinaryName;
use crate::error::{GridError, Result};

/// Environment variable naming a directory searched first for the hkd binaries.
pub const BIN_DIR_ENV: &str = "HKD_BIN_DIR";

/// A located binary (and the subcommand the grid runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryInfo {
    pub name: BinaryName,
    /// Absolute path of the executable the tasks run.
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<String>,
}

impl BinaryInfo {
    /// Locates `name` ([`locate`]) and checks that `subcommand` is one it has.
    pub fn find(name: BinaryName, subcommand: Option<&str>) -> Result<BinaryInfo> {
        name.command(subcommand).map_err(GridError::Binary)?;
        let path = locate(name.file_name())?;
        Ok(Self::at(name, &path, subcommand))
    }

    /// The binary at `path` (made absolute), without looking for it.
    pub fn at(name: BinaryName, path: &Path, subcommand: Option<&str>) -> BinaryInfo {
        BinaryInfo {
            name,
            path: hkd_rundir::absolute(path),
            subcommand: subcommand.map(str::to_string),
        }
    }

    /// The clap command the grid's tasks are parsed with.
    pub fn command(&self) -> Result<clap::Command> {
        self.name
            .command(self.subcommand.as_deref())
            .map_err(GridError::Binary)
    }
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
