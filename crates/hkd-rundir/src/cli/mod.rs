//! The command lines of the binaries a grid runs, defined once with clap: each binary
//! parses its own, and `hkd-grid` parses every task of a grid with the same definition
//! in-process (to check its keys and values, and for `hkd-train` to know its run
//! directory). No help text is scraped; no flag is listed twice.

// Doc comments on clap types are --help text, written for the terminal (`<OUT>`,
// `DIR[:split]`), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

pub mod analyze;
pub mod eval;
mod train;

pub use train::{
    CommandError, Execution, TrainCommand, key_of, normalize_against, one_line,
    with_negative_numbers,
};

/// Which binary a grid runs, and its command line (for `hkd-grid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BinaryName {
    #[serde(rename = "hkd-train")]
    Train,
    #[serde(rename = "hkd-eval")]
    Eval,
    #[serde(rename = "hkd-analyze")]
    Analyze,
}

impl BinaryName {
    /// The executable's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            BinaryName::Train => "hkd-train",
            BinaryName::Eval => "hkd-eval",
            BinaryName::Analyze => "hkd-analyze",
        }
    }

    /// The clap command a task of this binary is parsed with: `hkd-train`'s training
    /// flags, `hkd-eval`'s subcommand (`run`, `predict`), or `hkd-analyze`'s flags. An
    /// unknown subcommand is an error naming the known ones.
    pub fn command(self, subcommand: Option<&str>) -> Result<clap::Command, String> {
        use clap::CommandFactory;
        let top = match self {
            BinaryName::Train => TrainCommand::clap_command(),
            BinaryName::Eval => eval::EvalCli::command(),
            BinaryName::Analyze => analyze::AnalyzeCli::command(),
        };
        let names: Vec<String> = top
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        match subcommand {
            None if names.is_empty() => Ok(top),
            None => Err(format!(
                "{} needs a subcommand: {}",
                self.file_name(),
                names.join(", ")
            )),
            Some(sub) => {
                let mut globals: Vec<clap::Arg> = top
                    .get_arguments()
                    .filter(|a| a.is_global_set())
                    .cloned()
                    .collect();
                let found = top.find_subcommand(sub).cloned().ok_or_else(|| {
                    if names.is_empty() {
                        format!("{} has no subcommands", self.file_name())
                    } else {
                        format!(
                            "{} has no subcommand `{sub}`; it has {}",
                            self.file_name(),
                            names.join(", ")
                        )
                    }
                })?;
                // Global flags (hkd-eval's --device, --threads) are accepted after the
                // subcommand too.
                let mut cmd = found.name(self.file_name());
                for g in globals.drain(..) {
                    cmd = cmd.arg(g.global(false));
                }
                Ok(cmd)
            }
        }
    }
}

impl std::fmt::Display for BinaryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file_name())
    }
}
