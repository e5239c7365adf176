//! Settings, declared once per binary as a `clap` parser whose every field names its
//! environment variable, default and help line: `--help` is generated from the same
//! declaration that reads the values, so the two cannot drift. [`Shared`] holds what both
//! binaries read and is flattened into each. Range and format checks are value parsers; checks
//! between settings are [`Settings::check`].
//!
//! Values come from the environment (an empty value counts as unset) or, for tests and the
//! local stack, from a map ([`from_vars`]); each becomes the argument `--name=value`, so the
//! command line may set a value too. A bad or missing value is a [`SettingError`] naming the
//! variable; [`load`] prints it as one line and gives exit code 2.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, Parser};

mod events;
mod shared;
mod values;

pub use events::{DEFAULT_RETRY_SCHEDULE, EventSettings, Schedule};
pub use shared::{ChannelSenders, Shared};
pub use values::{Secret, account_sid, amqp_url, database_url, list, millis, public_base_url, seconds, secret};

/// The last lines of both binaries' `--help`.
pub const AFTER_HELP: &str = "Every setting is an environment variable (an empty value counts as unset); \
the flag of the same name, given on the command line, takes precedence.";

/// A binary's settings: a `clap` parser, plus the checks that span several settings.
pub trait Settings: Parser {
    /// Checks between settings that no single value parser can make.
    fn check(&self) -> Result<(), SettingError> {
        Ok(())
    }

    /// Derives what follows from the checked values (run once, after [`Settings::check`]).
    fn finish(&mut self) {}
}

/// A setting that is missing or cannot be used; shown as `NAME: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct SettingError {
    pub name: String,
    pub problem: String,
}

impl SettingError {
    pub fn new(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            problem: problem.into(),
        }
    }
}

/// The settings of this process: its environment and its command line. `--help` prints
/// them and gives exit code 0; a bad one is printed as one line and gives exit code 2.
pub fn load<T: Settings>(binary: &'static str) -> Result<T, ExitCode> {
    match parse::<T>(binary, std::env::vars(), std::env::args_os().skip(1)) {
        Ok(settings) => Ok(settings),
        Err(Problem::Help(help)) => {
            print!("{help}");
            Err(ExitCode::SUCCESS)
        }
        Err(Problem::Bad(e)) => {
            eprintln!("{binary}: bad setting {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The settings from `vars` alone (name, value), as a process with that environment and no
/// arguments would read them.
pub fn from_vars<T: Settings>(vars: impl IntoIterator<Item = (String, String)>) -> Result<T, SettingError> {
    match parse::<T>("settings", vars, std::iter::empty::<OsString>()) {
        Ok(settings) => Ok(settings),
        Err(Problem::Help(_)) => unreachable!("no arguments, so no --help"),
        Err(Problem::Bad(e)) => Err(e),
    }
}

/// Every environment variable a binary's settings read, in declaration order.
pub fn env_names<T: CommandFactory>() -> Vec<String> {
    T::command()
        .get_arguments()
        .filter_map(|a| a.get_env()?.to_str().map(str::to_owned))
        .collect()
}

enum Problem {
    Help(String),
    Bad(SettingError),
}

fn parse<T: Settings>(
    binary: &'static str,
    vars: impl IntoIterator<Item = (String, String)>,
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<T, Problem> {
    let declared = T::command().name(binary).args_override_self(true).mut_args(|a| {
        // `--help` shows each value under its variable's name, and never its value.
        let name = a.get_env().and_then(|e| e.to_str()).map(str::to_owned);
        let a = a.hide_env_values(true);
        match name {
            Some(name) => a.value_name(name),
            None => a,
        }
    });
    let vars: HashMap<String, String> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let mut argv: Vec<OsString> = vec![binary.into()];
    for arg in declared.get_arguments() {
        let value = arg.get_env().and_then(|e| e.to_str()).and_then(|e| vars.get(e));
        if let (Some(value), Some(long)) = (value, arg.get_long()) {
            argv.push(format!("--{long}={value}").into());
        }
    }
    argv.extend(args.into_iter().map(Into::into));
    // The values were taken from `vars` above; clap must not read the process environment
    // again (it would take empty values, and tests' maps would mix with it).
    let reader = declared.clone().mut_args(|a| a.env(None::<&'static str>));
    let parsed = reader
        .try_get_matches_from(argv)
        .and_then(|mut matches| T::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(mut settings) => match settings.check() {
            Ok(()) => {
                settings.finish();
                Ok(settings)
            }
            Err(e) => Err(Problem::Bad(e)),
        },
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let mut declared = declared;
            Err(Problem::Help(declared.render_help().to_string()))
        }
        Err(e) => Err(Problem::Bad(setting_error(&declared, &e))),
    }
}

/// A clap error as one line naming the environment variable(s) it is about.
fn setting_error(cmd: &Command, err: &clap::Error) -> SettingError {
    let args: Vec<String> = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let env_name = |arg: &str| {
        let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
        let found = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
        found.get_env()?.to_str().map(str::to_owned)
    };
    let names: Vec<String> = args.iter().map(|a| env_name(a).unwrap_or_else(|| a.clone())).collect();
    let name = if names.is_empty() {
        "arguments".to_owned()
    } else {
        names.join(", ")
    };
    let problem = match err.kind() {
        ErrorKind::MissingRequiredArgument if names.len() > 1 => "are required but not set".to_owned(),
        ErrorKind::MissingRequiredArgument => "is required but not set".to_owned(),
        ErrorKind::ValueValidation => {
            std::error::Error::source(err).map_or_else(|| "cannot be used".to_owned(), ToString::to_string)
        }
        ErrorKind::InvalidValue => match err.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("must be one of {}", valid.join(", ")),
            _ => "cannot be used".to_owned(),
        },
        ErrorKind::UnknownArgument => "is not an argument of this binary (try --help)".to_owned(),
        _ => err
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("cannot be used")
            .trim_start_matches("error: ")
            .to_owned(),
    };
    SettingError::new(name, problem)
}

#[cfg(test)]
mod tests;
