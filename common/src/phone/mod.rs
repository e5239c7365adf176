//! Phone numbers in E.164 form, checked against libphonenumber's rules.

use std::fmt;

mod rules;
#[cfg(test)]
mod rules_tests;

/// A phone number in E.164 form (`+` and 8 to 15 digits) that libphonenumber says is valid,
/// with what libphonenumber knows of it. The only way to get one is [`PhoneNumber::parse`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country: Option<String>,
    calling_code: u16,
    kind: NumberKind,
}

/// The kind of line a number is, as libphonenumber classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberKind {
    Mobile,
    FixedLineOrMobile,
    FixedLine,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    Uan,
    Other,
}

impl NumberKind {
    pub const ALL: [NumberKind; 11] = [
        Self::Mobile,
        Self::FixedLineOrMobile,
        Self::FixedLine,
        Self::TollFree,
        Self::PremiumRate,
        Self::SharedCost,
        Self::Voip,
        Self::PersonalNumber,
        Self::Pager,
        Self::Uan,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::FixedLineOrMobile => "fixed_line_or_mobile",
            Self::FixedLine => "fixed_line",
            Self::TollFree => "toll_free",
            Self::PremiumRate => "premium_rate",
            Self::SharedCost => "shared_cost",
            Self::Voip => "voip",
            Self::PersonalNumber => "personal_number",
            Self::Pager => "pager",
            Self::Uan => "uan",
            Self::Other => "other",
        }
    }

    fn from_library(kind: phonenumber::Type) -> Self {
        use phonenumber::Type as T;
        match kind {
            T::Mobile => Self::Mobile,
            T::FixedLineOrMobile => Self::FixedLineOrMobile,
            T::FixedLine => Self::FixedLine,
            T::TollFree => Self::TollFree,
            T::PremiumRate => Self::PremiumRate,
            T::SharedCost => Self::SharedCost,
            T::Voip => Self::Voip,
            T::PersonalNumber => Self::PersonalNumber,
            T::Pager => Self::Pager,
            T::Uan => Self::Uan,
            _ => Self::Other,
        }
    }
}

impl std::str::FromStr for NumberKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown number type {s:?}"))
    }
}

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
        match rules::classify(digits) {
            rules::Verdict::Valid {
                calling_code,
                country,
                kind,
            } => Ok(Self {
                e164: input.to_owned(),
                country: country.map(str::to_owned),
                calling_code,
                kind: NumberKind::from_library(kind),
            }),
            rules::Verdict::Invalid => Err(PhoneError::Invalid),
            rules::Verdict::Unsure => Self::parse_with_library(input),
        }
    }

    /// The `phonenumber` crate's own parse and checks, for what [`rules`] leaves to it (and
    /// for the bench, which compares both).
    #[doc(hidden)]
    pub fn parse_with_library(input: &str) -> Result<Self, PhoneError> {
        let parsed = phonenumber::parse(None, input).map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        // libphonenumber may normalise (a national prefix after the calling code, say); such
        // input is not the number in E.164 form.
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        if e164 != input {
            return Err(PhoneError::Invalid);
        }
        Ok(Self {
            e164,
            country: parsed.country().id().map(|id| id.as_ref().to_owned()),
            calling_code: parsed.code().value(),
            kind: NumberKind::from_library(parsed.number_type(&phonenumber::metadata::DATABASE)),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// ISO 3166 code of the number's region (`US`, `GB`, …), when libphonenumber knows it.
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }

    pub fn kind(&self) -> NumberKind {
        self.kind
    }

    /// The country calling code and the next three digits (`+1415`): the unit in which SMS
    /// pumping shows, since premium ranges share their first digits.
    pub fn prefix(&self) -> &str {
        let len = 1 + self.calling_code.to_string().len() + 3;
        &self.e164[..len.min(self.e164.len())]
    }

    /// The number for logs: country and area digits, then `***`, then the last four
    /// (`+1415***2671`).
    pub fn masked(&self) -> String {
        mask(&self.e164)
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
    fn a_number_knows_its_country_kind_and_prefix() {
        let us = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(us.country(), Some("US"));
        assert_eq!(us.kind(), NumberKind::FixedLineOrMobile);
        assert_eq!(us.prefix(), "+1415");
        let fr = PhoneNumber::parse("+33612345678").unwrap();
        assert_eq!(
            (fr.country(), fr.kind(), fr.prefix()),
            (Some("FR"), NumberKind::Mobile, "+33612")
        );
        let premium = PhoneNumber::parse("+19005551234").unwrap();
        assert_eq!(premium.kind(), NumberKind::PremiumRate);
        assert_eq!(PhoneNumber::parse("+18005551234").unwrap().kind(), NumberKind::TollFree);
    }

    #[test]
    fn number_kinds_round_trip_through_text() {
        for kind in NumberKind::ALL {
            assert_eq!(kind.as_str().parse::<NumberKind>().unwrap(), kind);
        }
        assert!("landline".parse::<NumberKind>().is_err());
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
