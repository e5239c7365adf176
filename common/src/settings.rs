//! Reading settings from the environment.
//!
//! Each binary declares its settings once, as a table of [`Setting`]s; the same table gives
//! `--help` its text and [`Env`] its defaults, so the help can never drift from what is read.
//! A bad or missing value is a [`SettingError`] naming the variable; the binaries print it as
//! one line and exit with code 2.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// One environment variable a binary reads.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    /// `None` means the variable is required.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl Setting {
    pub const fn required(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            default: None,
            help,
        }
    }
    pub const fn with_default(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Self {
            name,
            default: Some(default),
            help,
        }
    }
}

/// A setting that is missing or cannot be used; shown as `NAME: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct SettingError {
    pub name: &'static str,
    pub problem: String,
}

impl SettingError {
    pub fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

/// A source of values for a fixed table of settings (the process environment, or a map in tests).
pub struct Env {
    settings: &'static [Setting],
    values: HashMap<String, String>,
}

impl Env {
    /// Reads the process environment. Empty values count as unset.
    pub fn from_process(settings: &'static [Setting]) -> Self {
        Self::from_map(settings, std::env::vars())
    }

    pub fn from_map(settings: &'static [Setting], values: impl IntoIterator<Item = (String, String)>) -> Self {
        let values = values.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        Self { settings, values }
    }

    fn setting(&self, name: &'static str) -> &Setting {
        self.settings
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("setting {name} is read but not declared"))
    }

    /// The value, or the default; an error if the setting is required and unset.
    pub fn string(&self, name: &'static str) -> Result<String, SettingError> {
        match (self.values.get(name), self.setting(name).default) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(d)) => Ok(d.to_owned()),
            (None, None) => Err(SettingError::new(name, "is required but not set")),
        }
    }

    /// The value if set (a setting with an empty default is optional).
    pub fn optional(&self, name: &'static str) -> Option<String> {
        self.string(name).ok().filter(|v| !v.is_empty())
    }

    /// The value parsed with `FromStr`.
    pub fn parse<T>(&self, name: &'static str) -> Result<T, SettingError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.string(name)?;
        raw.trim()
            .parse()
            .map_err(|e| SettingError::new(name, format!("cannot use {raw:?}: {e}")))
    }

    /// A number that must lie in `range`.
    pub fn number_in<T>(&self, name: &'static str, range: std::ops::RangeInclusive<T>) -> Result<T, SettingError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value: T = self.parse(name)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(SettingError::new(
                name,
                format!("must be between {} and {}, got {value}", range.start(), range.end()),
            ))
        }
    }
}

/// The `--help` text: what the binary does, then every setting with its default.
pub fn help_text(binary: &str, about: &str, settings: &[Setting]) -> String {
    let mut out = format!("{binary}: {about}\n\nUsage: {binary} [--help]\n\nSettings (environment variables):\n");
    for s in settings {
        let default = match s.default {
            None => "required".to_owned(),
            Some("") => "unset".to_owned(),
            Some(d) => format!("default {d}"),
        };
        out.push_str(&format!("  {:<32} {} [{}]\n", s.name, s.help, default));
    }
    out
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

/// `PUBLIC_BASE_URL`: an http(s) URL without query or fragment, kept without a trailing `/`.
pub fn public_base_url(env: &Env) -> Result<String, SettingError> {
    let raw = env.string("PUBLIC_BASE_URL")?;
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
        Err(SettingError::new(
            "PUBLIC_BASE_URL",
            format!("must be an http(s) URL with a host and without a query, got {raw:?}"),
        ))
    }
}

/// `DATABASE_URL`: a PostgreSQL URL that sqlx can use. Checked at start, so a typo stops
/// the process with exit 2 instead of failing every connection later. The value is never
/// shown (it may hold a password).
pub fn database_url(env: &Env) -> Result<Secret, SettingError> {
    const NAME: &str = "DATABASE_URL";
    let raw = env.string(NAME)?;
    let url = url::Url::parse(&raw).map_err(|e| SettingError::new(NAME, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(SettingError::new(
            NAME,
            "must be a postgres:// URL, such as postgres://user@host:5432/database",
        ));
    }
    raw.parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| SettingError::new(NAME, format!("cannot be used: {e}")))?;
    Ok(Secret::new(raw))
}

/// `AMQP_URL`: an `amqp://` or `amqps://` URL that lapin can use (the vhost is its path).
/// The value is never shown (it may hold a password).
pub fn amqp_url(env: &Env) -> Result<Secret, SettingError> {
    const NAME: &str = "AMQP_URL";
    let raw = env.string(NAME)?;
    let url = url::Url::parse(&raw).map_err(|e| SettingError::new(NAME, format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "amqp" | "amqps") || url.host_str().is_none_or(str::is_empty) {
        return Err(SettingError::new(
            NAME,
            "must be an amqp:// or amqps:// URL with a host, such as amqp://guest:guest@127.0.0.1:5672/%2f",
        ));
    }
    if raw.parse::<lapin::uri::AMQPUri>().is_err() {
        return Err(SettingError::new(
            NAME,
            "cannot be used (check the port, the vhost's percent-encoding and the query parameters)",
        ));
    }
    Ok(Secret::new(raw))
}

/// `TWILIO_ACCOUNT_SID`: `AC` and 32 hex digits.
pub fn account_sid(env: &Env) -> Result<String, SettingError> {
    let sid = env.string("TWILIO_ACCOUNT_SID")?;
    if !crate::twilio_sid::is_sid(&sid, "AC") {
        return Err(SettingError::new(
            "TWILIO_ACCOUNT_SID",
            "must be AC followed by 32 hex digits",
        ));
    }
    Ok(sid)
}

/// `LOG_FORMAT`: json, text or auto.
pub fn log_format(env: &Env) -> Result<String, SettingError> {
    let format = env.string("LOG_FORMAT")?;
    match format.as_str() {
        "auto" | "json" | "text" => Ok(format),
        _ => Err(SettingError::new("LOG_FORMAT", "must be json, text or auto")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &[Setting] = &[
        Setting::required("NEEDED", "must be there"),
        Setting::with_default("COUNT", "6", "a number"),
    ];

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(SETTINGS, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn a_missing_required_setting_names_the_variable() {
        let err = env(&[]).string("NEEDED").unwrap_err();
        assert_eq!(err.to_string(), "NEEDED: is required but not set");
    }

    #[test]
    fn an_empty_value_counts_as_unset_and_takes_the_default() {
        assert_eq!(env(&[("COUNT", "")]).parse::<u32>("COUNT").unwrap(), 6);
    }

    #[test]
    fn an_out_of_range_number_is_refused() {
        let err = env(&[("COUNT", "11")]).number_in("COUNT", 4u32..=10).unwrap_err();
        assert_eq!(err.to_string(), "COUNT: must be between 4 and 10, got 11");
    }

    #[test]
    fn urls_that_cannot_be_used_are_refused_at_start_without_showing_them() {
        const URLS: &[Setting] = &[
            Setting::with_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/verify", ""),
            Setting::with_default("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f", ""),
            Setting::with_default("PUBLIC_BASE_URL", "http://127.0.0.1:8080", ""),
        ];
        let with = |name: &str, value: &str| Env::from_map(URLS, [(name.to_string(), value.to_string())]);
        let defaults = with("UNRELATED", "");
        assert!(database_url(&defaults).is_ok() && amqp_url(&defaults).is_ok());
        assert!(public_base_url(&defaults).is_ok());
        for bad in ["not-a-url", "mysql://u@h/db", "postgres://u:secret@h:notaport/db"] {
            let err = database_url(&with("DATABASE_URL", bad)).unwrap_err();
            assert_eq!(err.name, "DATABASE_URL", "{bad}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        for bad in ["not-a-url", "http://h/", "amqp://u:secret@h:99999/%2f", "amqp:///%2f"] {
            let err = amqp_url(&with("AMQP_URL", bad)).unwrap_err();
            assert_eq!(err.name, "AMQP_URL", "{bad}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        for bad in ["not-a-url", "ftp://h", "http://", "http://h/?q=1", "http://h:99999"] {
            assert_eq!(
                public_base_url(&with("PUBLIC_BASE_URL", bad)).unwrap_err().name,
                "PUBLIC_BASE_URL",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_secret_does_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret([redacted])");
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = help_text("x", "does x", SETTINGS);
        assert!(help.contains("NEEDED") && help.contains("required"));
        assert!(help.contains("COUNT") && help.contains("default 6"));
    }
}
