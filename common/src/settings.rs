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
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(['?', '#', ' ']) => Ok(trimmed.to_owned()),
        _ => Err(SettingError::new(
            "PUBLIC_BASE_URL",
            format!("must be an http(s) URL without a query, got {raw:?}"),
        )),
    }
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
