//! Value parsers of settings (ranges, URLs, lists, secrets): each turns one variable's text
//! into its type, or says what is wrong without echoing a value that may be secret.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::builder::TypedValueParser;

use crate::seal::Sealer;

/// A whole number of seconds in `range`, as a [`Duration`].
pub fn seconds(range: RangeInclusive<u64>) -> impl TypedValueParser<Value = Duration> {
    clap::value_parser!(u64).range(range).map(Duration::from_secs)
}

/// A whole number of milliseconds in `range`, as a [`Duration`].
pub fn millis(range: RangeInclusive<u64>) -> impl TypedValueParser<Value = Duration> {
    clap::value_parser!(u64).range(range).map(Duration::from_millis)
}

/// A comma-separated list, items trimmed, empty items dropped.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A string that must never be printed (tokens, keys): `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Any non-empty value, kept as a [`Secret`].
pub fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

pub(super) fn sealing_keys(value: &str) -> Result<Sealer, String> {
    Sealer::from_list(value).map_err(|e| e.problem)
}

/// `PUBLIC_BASE_URL`: an http(s) URL without query or fragment, kept without a trailing `/`.
pub fn public_base_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_end_matches('/');
    let usable = url::Url::parse(trimmed).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some_and(|h| !h.is_empty())
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
    });
    if usable && !trimmed.contains(' ') {
        Ok(trimmed.to_owned())
    } else {
        Err(format!(
            "must be an http(s) URL with a host and without a query, got {raw:?}"
        ))
    }
}

/// `DATABASE_URL`: a PostgreSQL URL that sqlx can use. Checked at start, so a typo stops
/// the process with exit 2 instead of failing every connection later. The value is never
/// shown (it may hold a password).
pub fn database_url(raw: &str) -> Result<Secret, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("must be a postgres:// URL, such as postgres://user@host:5432/database".into());
    }
    raw.parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| format!("cannot be used: {e}"))?;
    Ok(Secret::new(raw))
}

/// `AMQP_URL`: an `amqp://` or `amqps://` URL that lapin can use (the vhost is its path), or
/// a comma-separated list of them naming the nodes of a cluster. The value is never shown
/// (it may hold a password); an error names the entry by its position.
pub fn amqp_url(raw: &str) -> Result<Secret, String> {
    let nodes: Vec<&str> = crate::broker::split_nodes(raw).collect();
    if nodes.is_empty() {
        return Err("must name at least one node, such as amqp://guest:guest@127.0.0.1:5672/%2f".into());
    }
    let many = nodes.len() > 1;
    for (i, node) in nodes.iter().enumerate() {
        let which = if many {
            format!("entry {} ", i + 1)
        } else {
            String::new()
        };
        let url = url::Url::parse(node).map_err(|e| format!("{which}is not a URL ({e})"))?;
        if !matches!(url.scheme(), "amqp" | "amqps") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{which}must be an amqp:// or amqps:// URL with a host, such as amqp://guest:guest@127.0.0.1:5672/%2f"
            ));
        }
        if node.parse::<lapin::uri::AMQPUri>().is_err() {
            return Err(format!(
                "{which}cannot be used (check the port, the vhost's percent-encoding and the query parameters)"
            ));
        }
    }
    Ok(Secret::new(raw))
}

/// `TWILIO_ACCOUNT_SID`: `AC` and 32 hex digits.
pub fn account_sid(sid: &str) -> Result<String, String> {
    if crate::twilio_sid::is_sid(sid, "AC") {
        Ok(sid.to_owned())
    } else {
        Err("must be AC followed by 32 hex digits".into())
    }
}
