//! What every hkd binary does the same way, included by each with
//! `#[path = "../../shared/runtime.rs"] mod runtime;`: the log on stderr, the error
//! printer and the exit-code policy (docs/README.md, "Exit codes"). Every includer depends
//! on `tracing-subscriber`.
#![allow(dead_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

/// Exit code: the work failed (a run, a task, a file that could not be written, …).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line, a config file or an input was refused before any work.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: interrupted by a signal after saving what resumes it (`EX_TEMPFAIL`,
/// `hkd_rundir::EXIT_CHECKPOINTED`).
pub const EXIT_INTERRUPTED: u8 = 75;

/// Whether stderr gets colours: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The log on stderr: `RUST_LOG` if set, else `default_level`; colours only where
/// [`colour`] says; timestamps unless `timestamps` is false.
pub fn init_logging(default_level: &str, timestamps: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_target(false);
    if timestamps {
        builder.init();
    } else {
        builder.without_time().init();
    }
}

/// The lines that explain an error: its message, then each cause that adds something
/// (a cause whose text the message already contains is not repeated).
pub fn error_lines(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut lines = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !lines.iter().any(|l| l.contains(&text)) {
            lines.push(format!("  caused by: {text}"));
        }
        source = s.source();
    }
    lines
}

/// Parses the command line as clap's `C`, every value option taking negative numbers
/// (`hkd_rundir::cli::with_negative_numbers`, so that `--lr -0.1` reaches the validator):
/// `--help` and `--version` print and exit 0; a usage error prints clap's message as
/// `<program>: error: …` with the usage and exits 2.
pub fn parse_cli<C: clap::Parser>(program: &str) -> Result<C, ExitCode> {
    let cmd = hkd_rundir::cli::with_negative_numbers(C::command());
    match cmd.try_get_matches().and_then(|m| C::from_arg_matches(&m)) {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("{program}: error: {text}");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Prints `<program>: error: <message>` and its causes to stderr and returns `code`.
pub fn fail(program: &str, e: &(dyn std::error::Error + 'static), code: u8) -> ExitCode {
    let mut lines = error_lines(e).into_iter();
    if let Some(first) = lines.next() {
        eprintln!("{program}: error: {first}");
    }
    for line in lines {
        eprintln!("{line}");
    }
    ExitCode::from(code)
}
