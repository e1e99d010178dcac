//! `[storage] url`: a libpq-style URL, read into tokio-postgres's config
//! plus the two TLS settings it does not know (`sslmode=verify-ca` /
//! `verify-full` and `sslrootcert`), which are ours to enforce.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::{Host, SslMode};

/// libpq's `sslmode`, with libpq's meaning for each word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS if the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS always; the certificate is verified only if `sslrootcert` is set.
    Require,
    /// TLS, certificate signed by a trusted CA, any host name.
    VerifyCa,
    /// TLS, trusted CA, and the certificate names the host connected to.
    VerifyFull,
}

#[derive(Clone)]
pub struct DbUrl {
    pub config: tokio_postgres::Config,
    pub tls: TlsMode,
    /// CA certificates (PEM) to trust instead of the system's.
    pub root_cert: Option<PathBuf>,
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.server())
    }
}

impl DbUrl {
    /// Refusals are fixed phrases: the URL itself is never quoted back.
    pub fn parse(url: &str) -> Result<DbUrl, &'static str> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must start with postgres:// (postgres://USER@HOST/DATABASE)");
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| "a parameter is not valid UTF-8")?;
            match k {
                "sslmode" => {
                    tls = match value.as_ref() {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        _ => return Err(
                            "sslmode must be disable, prefer, require, verify-ca or verify-full",
                        ),
                    }
                }
                "sslrootcert" => {
                    if !value.starts_with('/') {
                        return Err("sslrootcert must be an absolute path");
                    }
                    root_cert = Some(PathBuf::from(value.as_ref()));
                }
                "password" => return Err("must not hold a password: put it in password_file"),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&rebuilt).map_err(|_| {
            "is not a PostgreSQL URL this daemon can use (postgres://USER@HOST[:PORT]/DATABASE)"
        })?;
        if config.get_password().is_some() {
            return Err("must not hold a password: put it in password_file");
        }
        if config.get_hosts().is_empty() {
            return Err("must name the database host");
        }
        if config.get_user().is_none() {
            return Err("must name the database user (postgres://USER@HOST/DATABASE)");
        }
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        Ok(DbUrl {
            config,
            tls,
            root_cert,
        })
    }

    /// `HOST:PORT/DATABASE` for messages (never a credential).
    pub fn server(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self.config.get_dbname().unwrap_or("");
        format!("{host}:{port}/{db}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_and_root_cert_are_ours_the_rest_is_tokio_postgres() {
        let u = DbUrl::parse(
            "postgres://otpgate@db.example:5433/fleet?sslmode=verify-full&sslrootcert=/etc/otpgate/ca%20x.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(u.tls, TlsMode::VerifyFull);
        assert_eq!(
            u.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/otpgate/ca x.pem"))
        );
        assert_eq!(u.config.get_user(), Some("otpgate"));
        assert_eq!(u.config.get_dbname(), Some("fleet"));
        assert_eq!(u.server(), "db.example:5433/fleet");
        assert_eq!(u.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            DbUrl::parse("postgresql://u@h/d").unwrap().tls,
            TlsMode::Prefer
        );
    }

    #[test]
    fn passwords_and_nonsense_are_refused_without_quoting_them() {
        for bad in [
            "postgres://u:hunter2@h/d",
            "postgres://u@h/d?password=hunter2",
            "mysql://u@h/d",
            "postgres://u@h/d?sslmode=sometimes",
            "postgres://u@h/d?sslrootcert=relative.pem",
            "postgres://u@h/d?bogus=1",
            "postgres:///d",
        ] {
            let e = DbUrl::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
