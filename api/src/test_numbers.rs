//! `TEST_NUMBERS`: numbers that never get a message and always take one known code, for
//! app-store reviewers and UI tests. A start for one stores a verification with that code,
//! marks it `test` with its delivery `delivered`, sends nothing (no outbox row, no job), uses
//! no rate limit, pumping-guard count or budget, and skips the country and number-type rules.
//! Checks work as for any number.

use std::collections::BTreeMap;

use common::code::CodeLength;
use common::phone::{PhoneNumber, mask};
use common::settings::{SettingError, list};

/// `TEST_NUMBERS`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestNumberConfig {
    /// comma-separated +number:code pairs (e.g. +14155550100:123456): starts for them send nothing, use no rate limit, skip the country and number-type rules and store that code; for app reviews and UI tests [default: none]
    #[arg(long = "test-numbers", env = "TEST_NUMBERS", default_value = "", hide_default_value = true, value_parser = test_numbers)]
    pub test_numbers: TestNumbers,
}

/// Test numbers (E.164) and their codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestNumbers(BTreeMap<String, String>);

impl TestNumbers {
    /// The fixed code of `phone`, if it is a test number.
    pub fn code_for(&self, phone: &PhoneNumber) -> Option<&str> {
        self.0.get(phone.as_str()).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The numbers, masked as in the logs.
    pub fn masked(&self) -> Vec<String> {
        self.0.keys().map(|n| mask(n)).collect()
    }

    /// Every code must have `CODE_LENGTH` digits, or no check could ever take it.
    pub fn check(&self, length: CodeLength) -> Result<(), SettingError> {
        match self.0.iter().find(|(_, code)| code.len() != length.digits()) {
            Some((number, _)) => Err(SettingError::new(
                "TEST_NUMBERS",
                format!(
                    "the code of {} must have CODE_LENGTH ({}) digits",
                    mask(number),
                    length.digits()
                ),
            )),
            None => Ok(()),
        }
    }
}

fn test_numbers(value: &str) -> Result<TestNumbers, String> {
    let mut numbers = BTreeMap::new();
    for pair in list(value) {
        let (number, code) = pair
            .split_once(':')
            .ok_or_else(|| format!("{} is not +number:code", mask(&pair)))?;
        let phone = PhoneNumber::parse(number.trim()).map_err(|e| format!("{}: {e}", mask(number)))?;
        let code = code.trim();
        if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("the code of {} must be 4 to 10 digits", phone.masked()));
        }
        if numbers.insert(phone.as_str().to_owned(), code.to_owned()).is_some() {
            return Err(format!("{} is listed twice", phone.masked()));
        }
    }
    Ok(TestNumbers(numbers))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::read;

    #[test]
    fn test_numbers_are_valid_numbers_with_codes_of_code_length() {
        let c = read(&[("TEST_NUMBERS", "+14155550100:123456, +442071838750:654321")]).unwrap();
        let numbers = &c.test_numbers.test_numbers;
        assert_eq!(numbers.len(), 2);
        let phone = common::phone::PhoneNumber::parse("+14155550100").unwrap();
        assert_eq!(numbers.code_for(&phone), Some("123456"));
        assert!(numbers.masked().iter().all(|m| m.contains("***")));
        assert!(read(&[]).unwrap().test_numbers.test_numbers.is_empty());
        for bad in [
            "+14155550100",
            "+14155550100:12a456",
            "+1415:123456",
            "+14155550100:123456,+14155550100:111111",
            "+14155550100:1234",
        ] {
            let e = read(&[("TEST_NUMBERS", bad)]).unwrap_err();
            assert_eq!(e.name, "TEST_NUMBERS", "{bad}");
            assert!(!e.problem.contains("4155550100"), "numbers are masked: {}", e.problem);
        }
    }
}
