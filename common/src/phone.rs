//! Phone numbers in E.164 form, checked against libphonenumber's rules.

use std::fmt;

/// A phone number in E.164 form (`+` and 8 to 15 digits) that libphonenumber says is valid.
/// The only way to get one is [`PhoneNumber::parse`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone_number must be in E.164 form: '+' followed by 8 to 15 digits, no spaces")]
    NotE164,
    #[error("phone_number is not a valid number for its country")]
    Invalid,
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let digits = input.strip_prefix('+').ok_or(PhoneError::NotE164)?;
        let well_formed =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if !well_formed {
            return Err(PhoneError::NotE164);
        }
        let parsed = phonenumber::parse(None, input).map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        // libphonenumber may normalise (it never should for strict E.164 input); keep its form.
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        if e164 != input {
            return Err(PhoneError::Invalid);
        }
        Ok(Self(e164))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number for logs: country and area digits, then `***`, then the last four
    /// (`+1415***2671`).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks any E.164-looking string the way [`PhoneNumber::masked`] does.
pub fn mask(number: &str) -> String {
    let n = number.len();
    if n <= 8 {
        return "***".to_owned();
    }
    format!("{}***{}", &number[..5], &number[n - 4..])
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_e164_number_is_accepted() {
        assert_eq!(PhoneNumber::parse("+14155552671").unwrap().as_str(), "+14155552671");
        assert!(PhoneNumber::parse("+447911123456").is_ok());
    }

    #[test]
    fn numbers_not_in_e164_form_are_refused() {
        for input in [
            "14155552671",
            "+1 415 555 2671",
            "+1415555267a",
            "+",
            "",
            "+0123456789",
            "+1234567890123456",
        ] {
            assert_eq!(PhoneNumber::parse(input), Err(PhoneError::NotE164), "{input}");
        }
    }

    #[test]
    fn well_formed_but_impossible_numbers_are_refused() {
        assert_eq!(PhoneNumber::parse("+10005550000"), Err(PhoneError::Invalid));
        assert_eq!(PhoneNumber::parse("+999123456789"), Err(PhoneError::Invalid));
    }

    #[test]
    fn masking_keeps_only_the_prefix_and_the_last_four_digits() {
        assert_eq!(PhoneNumber::parse("+14155552671").unwrap().masked(), "+1415***2671");
        assert_eq!(
            format!("{:?}", PhoneNumber::parse("+14155552671").unwrap()),
            "PhoneNumber(+1415***2671)"
        );
    }
}
