//! Shell quoting and the checks on values that reach a shell or an `#SBATCH` line.
//!
//! The rules:
//! - A grid value, a positional argument, a path: any text without control characters.
//!   It reaches the task as one `argv` element (never through a shell), and wherever it
//!   is written into a shell script or `tasks.txt` it is single-quoted by [`quote`] so the
//!   shell reads back exactly the same word: spaces, quotes, `$`, backticks and `;` are
//!   inert. Control characters (newline, tab, escape, NUL…) are refused, because a
//!   newline would break the one-command-per-line `tasks.txt` and is never meant.
//! - An `#SBATCH` option value (partition, account, time…): sbatch splits directives on
//!   whitespace and a newline would end the comment and start a script line, so these
//!   must be single tokens: no whitespace, no control characters, no quotes.

/// Why a value is refused, or `None` if it is fine as a task argument (see module docs).
pub fn argument_problem(value: &str) -> Option<String> {
    value.chars().find(|c| c.is_control()).map(|c| {
        format!(
            "it contains the control character U+{:04X}; grid values, arguments and paths \
             must be printable text (spaces, quotes, $ and backticks are fine)",
            c as u32
        )
    })
}

/// Why a value is refused as an `#SBATCH` option value, or `None` if it is one safe token.
pub fn directive_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("it is empty".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        return Some(format!(
            "it contains {c:?}; #SBATCH values must be one token without whitespace, quotes, \
             backslashes or control characters (sbatch splits directives on whitespace and a \
             newline would start a script line)"
        ));
    }
    None
}

/// Why a whole extra `#SBATCH` line (e.g. `--mail-type=END`) is refused, or `None`.
pub fn extra_directive_problem(line: &str) -> Option<String> {
    if !line.starts_with('-') {
        return Some("an extra #SBATCH entry must be an sbatch option starting with '-' (e.g. \"--mail-type=END\")".into());
    }
    line.chars().find(|c| c.is_control()).map(|c| {
        format!(
            "it contains the control character U+{:04X}; each entry becomes one #SBATCH line",
            c as u32
        )
    })
}

/// Quotes `word` for a POSIX shell: `sh`/`bash` read the result back as exactly `word`.
///
/// Plain words are left as they are: `[A-Za-z0-9_./:@+-]`, and also `=` and `,` in
/// words that start with `-` (`--lambda=0.5`: not an assignment, not a brace expansion).
/// Anything else is quoted (single quotes, or double quotes with backslash escapes, as
/// the `shlex` crate chooses, tested against bash, dash, zsh and busybox). Callers refuse
/// control characters first ([`argument_problem`]); a NUL, which no shell can carry, is
/// dropped.
pub fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    push_quoted(&mut out, word);
    out
}

fn is_plain(word: &str) -> bool {
    let option = word.starts_with('-');
    !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'.' | b'/' | b':' | b'@' | b'+' | b'-')
                || (option && matches!(b, b'=' | b','))
        })
}

/// Appends `word`, quoted as [`quote`] does, to `out`.
pub fn push_quoted(out: &mut String, word: &str) {
    if is_plain(word) {
        out.push_str(word);
        return;
    }
    match shlex::try_quote(word) {
        Ok(q) => out.push_str(&q),
        // Only NUL fails; values are checked before they get here, so drop it rather
        // than panic.
        Err(_) => {
            if let Ok(q) = shlex::try_quote(&word.replace('\0', "")) {
                out.push_str(&q);
            }
        }
    }
}

/// Joins words into one shell command line, each word quoted with [`quote`].
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_quoted(&mut out, w.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_split_back_to_the_same_words() {
        let words = [
            "plain",
            "with space",
            "it's",
            "$(touch /tmp/pwned)",
            "`id`",
            "a\"b",
            "semi;colon && rm -rf x",
            "",
            "back\\slash",
            "ünïcode λ",
            "--lambda=0.5",
            "--set=a=1,b=2",
            "x=1",
            "{a,b}",
            "--x={a,b}",
            "~user",
            "*.toml",
        ];
        let line = join(&words);
        let back = shlex::split(&line).expect("shlex splits what it quoted");
        assert_eq!(back, words);
        // and bash agrees
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .expect("bash runs");
        let from_bash: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        assert_eq!(from_bash[..words.len()], words);
        assert_eq!(quote("--lambda=0.5"), "--lambda=0.5");
        assert_eq!(quote("x=1"), "'x=1'");
    }

    #[test]
    fn control_characters_are_refused_as_arguments() {
        assert!(argument_problem("a\nb").unwrap().contains("U+000A"));
        assert!(argument_problem("tab\there").unwrap().contains("U+0009"));
        assert!(
            argument_problem("esc\u{1b}[31m")
                .unwrap()
                .contains("U+001B")
        );
        assert_eq!(argument_problem("$(touch x) 'q' `b`"), None);
    }

    #[test]
    fn directive_values_must_be_single_tokens() {
        assert_eq!(directive_problem("gpu-long"), None);
        assert_eq!(directive_problem("1-00:00:00"), None);
        assert!(directive_problem("a b").is_some());
        assert!(directive_problem("a\nsrun evil").is_some());
        assert!(directive_problem("").is_some());
        assert!(directive_problem("'x'").is_some());
        assert!(extra_directive_problem("--mail-type=END").is_none());
        assert!(extra_directive_problem("rm -rf /").is_some());
        assert!(extra_directive_problem("--comment=x\ntouch /tmp/pwned").is_some());
    }
}
