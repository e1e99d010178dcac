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

/// The account's password from stdin's next line (`--password-stdin`):
/// only the line ending is taken off, since spaces may be part of it.
pub fn password_from_stdin() -> Result<Zeroizing<String>, CliError> {
    let mut line = Zeroizing::new(String::with_capacity(1024));
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::io("cannot read stdin", &e))?;
    if n == 0 {
        return Err(CliError::Input("no password on stdin".to_owned()));
    }
    Ok(without_line_ending(&line))
}

fn without_line_ending(line: &str) -> Zeroizing<String> {
    let end = line.trim_end_matches(['\n', '\r']);
    Zeroizing::new(end.to_owned())
}

/// Asks for the account's password on the controlling terminal
/// (`/dev/tty`), with echo off for the answer and restored after it, even
/// on an error. Never from the command line or the environment.
pub fn password_from_terminal(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    use std::io::Read;
    let no_tty = |e: &std::io::Error| {
        CliError::Input(format!(
            "the password is needed and there is no terminal to ask on ({}): \
             pass --password-stdin and give it on stdin",
            crate::error::io_reason(e)
        ))
    };
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| no_tty(&e))?;
    let saved = termios::tcgetattr(&tty)
        .map_err(|e| no_tty(&std::io::Error::from_raw_os_error(e as i32)))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .map_err(|e| CliError::io("cannot write to the terminal", &e))?;
    termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet)
        .map_err(|e| CliError::io("cannot turn off echo", &e.into()))?;
    // Byte by byte into a buffer that is never reallocated: no copy of the
    // password is left behind unwiped.
    let mut buf = Zeroizing::new(Vec::with_capacity(1024));
    let mut byte = [0u8; 1];
    let read = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) if buf.len() < 1024 => buf.push(byte[0]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    zeroize::Zeroize::zeroize(&mut byte);
    let restored = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    read.map_err(|e| CliError::io("cannot read the terminal", &e))?;
    restored.map_err(|e| CliError::io("cannot turn echo back on", &e.into()))?;
    let text = std::str::from_utf8(&buf)
        .map_err(|_| CliError::Input("the password is not valid UTF-8".to_owned()))?;
    Ok(without_line_ending(text))
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
