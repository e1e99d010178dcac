//! Reading codes: from a prompt on the terminal or from stdin (`-`).

use std::io::{BufRead, IsTerminal, Write};

use zeroize::Zeroizing;

use crate::error::CliError;

/// Whether a person is at the keyboard and sees the output: enrolment draws
/// the QR code and prompts only then.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// One line from stdin without its line ending; `None` at end of input.
pub fn read_line() -> Result<Option<Zeroizing<String>>, CliError> {
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::io("cannot read stdin", &e))?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Zeroizing::new(line.trim().to_owned())))
}

/// Shows `prompt` on stderr (stdout may be a pipe carrying JSON) and reads
/// the answer. Codes are one-time and short-lived, so echoing them is
/// harmless and lets a person see a typo before pressing Enter.
pub fn prompt(prompt: &str) -> Result<Option<Zeroizing<String>>, CliError> {
    let mut err = std::io::stderr().lock();
    err.write_all(prompt.as_bytes())
        .and_then(|()| err.flush())
        .map_err(|e| CliError::io("cannot write to the terminal", &e))?;
    drop(err);
    read_line()
}

/// A code as given on the command line: `-` means the next line of stdin,
/// which keeps it out of the process list.
pub fn code_argument(given: &str) -> Result<Zeroizing<String>, CliError> {
    if given == "-" {
        read_line()?.ok_or_else(|| CliError::Input("no code on stdin".to_owned()))
    } else {
        Ok(Zeroizing::new(given.trim().to_owned()))
    }
}

/// What a person typed at the enrolment prompt, normalised: the digits
/// without the spaces some apps show in the middle ("123 456").
pub enum Typed {
    /// Enter on an empty line, or end of input: finish later.
    Nothing,
    Code(Zeroizing<String>),
    /// Not a code at all: ask again without troubling the daemon.
    Garbage,
}

pub fn parse_typed(input: &str) -> Typed {
    let code: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect(),
    );
    if code.is_empty() {
        Typed::Nothing
    } else if (6..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) {
        Typed::Code(code)
    } else {
        Typed::Garbage
    }
}

/// The base32 secret in groups of four, for typing into an app by hand.
pub fn group_secret(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_groups_of_four() {
        assert_eq!(
            group_secret("JBSWY3DPEHPK3PXPJBSWY3DPEH"),
            "JBSW Y3DP EHPK 3PXP JBSW Y3DP EH"
        );
        assert_eq!(group_secret(""), "");
    }

    #[test]
    fn typed_codes() {
        assert!(matches!(parse_typed(""), Typed::Nothing));
        assert!(matches!(parse_typed("   "), Typed::Nothing));
        match parse_typed(" 123 456 ") {
            Typed::Code(c) => assert_eq!(c.as_str(), "123456"),
            _ => panic!(),
        }
        assert!(matches!(parse_typed("12345"), Typed::Garbage));
        assert!(matches!(parse_typed("12e456"), Typed::Garbage));
        assert!(matches!(parse_typed("q"), Typed::Garbage));
    }
}
