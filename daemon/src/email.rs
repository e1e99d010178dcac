//! The e-mail factor: one-time codes sent by SMTP.
//!
//! A code is 6 random digits from the OS's CSPRNG. Only an HMAC-SHA256 of
//! it, keyed with the master key and bound to the user, is stored, with its
//! expiry; the code itself exists only in the mail. Six digits are easy to
//! brute-force offline from a plain hash, so the key is what protects a
//! stolen state directory here, and the per-user lockout what protects the
//! live one.

use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lettre::message::{header, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::EmailConfig;
use crate::crypto::{random_bytes, CryptoError, MasterKey};
use crate::error::Error;

const HMAC_CONTEXT: &[u8] = b"otpgate/email-code/v1";

/// A fresh 6-digit code, uniformly drawn.
pub fn new_code() -> Result<Zeroizing<String>, CryptoError> {
    loop {
        let n = u32::from_le_bytes(random_bytes::<4>()?);
        // Reject the top sliver so every code is equally likely.
        if n < u32::MAX - (u32::MAX % 1_000_000) {
            return Ok(Zeroizing::new(format!("{:06}", n % 1_000_000)));
        }
    }
}

/// The stored form of a code.
pub fn code_hash(key: &MasterKey, user: &str, code: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(HMAC_CONTEXT);
    mac.update(&[0]);
    mac.update(user.as_bytes());
    mac.update(&[0]);
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn code_matches(key: &MasterKey, user: &str, code: &str, stored: &[u8]) -> bool {
    bool::from(code_hash(key, user, code).ct_eq(stored))
}

/// `alice@example.org` → `a***@example.org`: enough for the user to know
/// where to look, not enough to harvest addresses from login prompts.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Whether `address` is one we can send to (RFC 5322 as lettre reads it).
pub fn valid_address(address: &str) -> bool {
    address.len() <= 254 && address.parse::<lettre::Address>().is_ok()
}

/// Why a code is being sent, for the subject and text.
#[derive(Debug, Clone)]
pub enum Purpose {
    Login { service: String },
    Enrolment,
}

/// Whatever delivers a code: the SMTP `Mailer`, or a test's outbox.
pub trait SendCode: Send + Sync {
    /// Delivers `code` to `to`; the error is a reason a person can read.
    fn send_code<'a>(
        &'a self,
        to: &'a str,
        code: &'a str,
        purpose: Purpose,
        ttl_secs: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

    /// Delivers a notice about the account (a lock, a backup code used):
    /// plain text, no code in it.
    fn send_notice<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

impl SendCode for Mailer {
    fn send_notice<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.notice(to, subject, body))
    }

    fn send_code<'a>(
        &'a self,
        to: &'a str,
        code: &'a str,
        purpose: Purpose,
        ttl_secs: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.send(to, code, purpose, ttl_secs))
    }
}

/// Sends codes through the configured SMTP server. Sending is async on the
/// Tokio runtime: waiting for a slow server holds no lock and no thread.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    hostname: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailer(..)")
    }
}

impl Mailer {
    /// None when the e-mail factor is off (no `smtp_url`).
    pub fn from_config(cfg: &EmailConfig, hostname: &str) -> Result<Option<Mailer>, Error> {
        let Some(url) = &cfg.smtp_url else {
            return Ok(None);
        };
        let bad = |reason: String| Error::Email(reason);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| bad(format!("[email] smtp_url cannot be used: {e}")))?
            .timeout(Some(Duration::from_secs(cfg.timeout_secs)));
        if let Some(path) = &cfg.password_file {
            let password = read_password(path)?;
            let user = cfg
                .username
                .clone()
                .or_else(|| user_in_url(url))
                .ok_or_else(|| bad("[email] password_file needs a username".into()))?;
            builder = builder.credentials(Credentials::new(user, password.to_string()));
        }
        let from_addr = cfg
            .from
            .as_deref()
            .ok_or_else(|| bad("[email] from is required with smtp_url".into()))?;
        let from = from_addr
            .parse::<Mailbox>()
            .map_err(|e| bad(format!("[email] from {from_addr:?}: {e}")))?;
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
            hostname: hostname.to_string(),
        }))
    }

    /// A plain-text notice from this host.
    pub async fn notice(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("{subject} ({})", self.hostname))
            .header(header::ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub async fn send(
        &self,
        to: &str,
        code: &str,
        purpose: Purpose,
        ttl_secs: u64,
    ) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
        let minutes = ttl_secs.div_ceil(60);
        let (subject, what) = match purpose {
            Purpose::Login { service } => {
                let service = if service.is_empty() {
                    "a login"
                } else {
                    service.as_str()
                };
                (
                    format!("Your code for {service} on {}", self.hostname),
                    format!("to log in with {service} on {}", self.hostname),
                )
            }
            Purpose::Enrolment => (
                format!("Confirm your e-mail for logins on {}", self.hostname),
                format!(
                    "to confirm this address as your second factor on {}",
                    self.hostname
                ),
            ),
        };
        let plain = format!(
            "Your code {what} is:\n\n    {code}\n\nIt works once, for {minutes} minutes.\n\
             If you did not try to log in, someone may know your password: tell your administrator.\n"
        );
        let html = format!(
            "<p>Your code {what} is:</p><p style=\"font-size:200%;font-family:monospace\"><b>{code}</b></p>\
             <p>It works once, for {minutes} minutes.</p>\
             <p>If you did not try to log in, someone may know your password: tell your administrator.</p>"
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(header::MIME_VERSION_1_0)
            .multipart(MultiPart::alternative_plain_html(plain, html))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn user_in_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (user, _) = authority.rsplit_once('@')?;
    (!user.is_empty()).then(|| user.to_string())
}

/// The SMTP password file: root's, not readable by others, one line.
fn read_password(path: &Path) -> Result<Zeroizing<String>, Error> {
    use std::os::unix::fs::MetadataExt;
    let bad = |reason: String| Error::Email(format!("{}: {reason}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "must be owned by root and readable by root only (mode {:04o}): `chmod 0600 {}`",
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(bad("is empty".into()));
    }
    Ok(Zeroizing::new(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let a: Vec<_> = (0..20).map(|_| new_code().unwrap().to_string()).collect();
        assert!(a
            .iter()
            .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        let mut u = a.clone();
        u.sort();
        u.dedup();
        assert!(u.len() > 15);
    }

    #[test]
    fn hashes_bind_key_user_and_code() {
        let k = MasterKey::generate().unwrap();
        let h = code_hash(&k, "alice", "123456");
        assert!(code_matches(&k, "alice", "123456", &h));
        assert!(!code_matches(&k, "bob", "123456", &h));
        assert!(!code_matches(&k, "alice", "123457", &h));
        assert!(!code_matches(
            &MasterKey::generate().unwrap(),
            "alice",
            "123456",
            &h
        ));
    }

    #[test]
    fn masking_and_addresses() {
        assert_eq!(mask("alice@example.org"), "a***@example.org");
        assert_eq!(mask("x"), "***");
        assert!(valid_address("alice@example.org"));
        assert!(!valid_address("alice"));
        assert!(!valid_address("a b@example.org"));
        assert_eq!(user_in_url("smtps://otp@mx:465"), Some("otp".into()));
        assert_eq!(user_in_url("smtp://mx"), None);
    }
}
