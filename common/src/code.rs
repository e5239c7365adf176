//! One-time codes: generated uniformly with a CSPRNG, stored only as an HMAC bound to the
//! verification id, compared in constant time.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use uuid::Uuid;

use crate::settings::Secret;

/// How many digits a code has (4 to 10, as Twilio Verify allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLength(u8);

impl CodeLength {
    pub const MIN: u8 = 4;
    pub const MAX: u8 = 10;

    pub fn new(digits: u8) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&digits).then_some(Self(digits))
    }

    pub fn digits(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for CodeLength {
    fn default() -> Self {
        Self(6)
    }
}

/// A code of exactly [`CodeLength`] ASCII digits. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("code must be exactly {0} digits")]
pub struct CodeError(pub usize);

impl Code {
    /// A fresh code, uniform over all `len`-digit strings (leading zeros included).
    ///
    /// `rand::rng()` is a CSPRNG (ChaCha12 reseeded from the OS); `random_range` draws
    /// without modulo bias.
    pub fn generate(len: CodeLength) -> Self {
        let upper = 10u64.pow(len.0.into());
        let n = rand::rng().random_range(0..upper);
        Self(format!("{n:0width$}", width = len.digits()))
    }

    pub fn parse(input: &str, len: CodeLength) -> Result<Self, CodeError> {
        if input.len() == len.digits() && input.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(input.to_owned()))
        } else {
            Err(CodeError(len.digits()))
        }
    }

    /// A code of whatever allowed length `input` has (a code carried in a job or sealed,
    /// whose length was set when it was made).
    pub fn parse_any_length(input: &str) -> Option<Self> {
        let len = CodeLength::new(u8::try_from(input.len()).ok()?)?;
        Self::parse(input, len).ok()
    }

    /// The digits, for the SMS body and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code([redacted])")
    }
}

/// Turns a code into what is stored: HMAC-SHA256 keyed by `VERIFY_SECRET` over the
/// verification id and the code, so a stored digest is useless for any other verification
/// and a database dump does not reveal codes (a 6-digit code space is too small for a plain hash).
#[derive(Clone)]
pub struct CodeHasher {
    key: Secret,
}

impl CodeHasher {
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    fn mac(&self, id: Uuid, code: &Code) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes()).expect("HMAC accepts keys of any length");
        mac.update(b"verify-code-v1\0");
        mac.update(id.as_bytes());
        mac.update(code.0.as_bytes());
        mac
    }

    pub fn digest(&self, id: Uuid, code: &Code) -> Vec<u8> {
        self.mac(id, code).finalize().into_bytes().to_vec()
    }

    /// The code in an outbox row written by a build before codes were sealed with
    /// [`crate::seal`] (its digits XOR a keystream of HMAC-SHA256 over the verification id).
    /// Read only, so such rows are still relayed after an upgrade; nothing writes this form.
    pub fn open_pre_aead_outbox_code(&self, id: Uuid, sealed: &[u8]) -> Option<Code> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes()).expect("HMAC accepts keys of any length");
        mac.update(b"verify-outbox-seal-v1\0");
        mac.update(id.as_bytes());
        let stream: [u8; 32] = mac.finalize().into_bytes().into();
        let digits: Vec<u8> = sealed.iter().zip(stream).map(|(b, k)| b ^ k).collect();
        Code::parse_any_length(&String::from_utf8(digits).ok()?)
    }

    /// Whether `code` is the one whose digest is `stored`, compared in constant time.
    pub fn matches(&self, id: Uuid, code: &Code, stored: &[u8]) -> bool {
        self.mac(id, code).verify_slice(stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> CodeHasher {
        CodeHasher::new(Secret::new("0123456789abcdef0123456789abcdef"))
    }

    #[test]
    fn generated_codes_have_the_configured_length_and_only_digits() {
        for digits in CodeLength::MIN..=CodeLength::MAX {
            let len = CodeLength::new(digits).unwrap();
            let code = Code::generate(len);
            assert_eq!(code.expose().len(), usize::from(digits));
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    /// Chi-squared test over the first digit and the last digit of 100,000 four-digit codes:
    /// a biased generator (modulo bias, no leading zeros) fails it; a uniform one passes
    /// with overwhelming probability (threshold is p = 0.0001 for 9 degrees of freedom).
    #[test]
    fn generated_codes_are_uniform_over_every_position_including_leading_zeros() {
        let len = CodeLength::new(4).unwrap();
        let samples = 100_000;
        let mut counts = [[0u32; 10]; 4];
        for _ in 0..samples {
            let code = Code::generate(len);
            for (pos, b) in code.expose().bytes().enumerate() {
                counts[pos][usize::from(b - b'0')] += 1;
            }
        }
        let expected = f64::from(samples) / 10.0;
        for (pos, row) in counts.iter().enumerate() {
            let chi2: f64 = row.iter().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
            assert!(
                chi2 < 33.72,
                "digit position {pos} is not uniform: chi2 = {chi2}, {row:?}"
            );
        }
    }

    #[test]
    fn codes_of_the_wrong_length_or_with_non_digits_are_refused() {
        let len = CodeLength::default();
        assert!(Code::parse("123456", len).is_ok());
        for bad in ["12345", "1234567", "12345a", "", "１２３４５６", " 12345"] {
            assert_eq!(Code::parse(bad, len), Err(CodeError(6)), "{bad:?}");
        }
    }

    #[test]
    fn the_digest_matches_only_the_same_code_for_the_same_verification() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let code = Code::parse("042042", CodeLength::default()).unwrap();
        let other = Code::parse("042043", CodeLength::default()).unwrap();
        let stored = hasher().digest(a, &code);
        assert_eq!(stored.len(), 32);
        assert!(hasher().matches(a, &code, &stored));
        assert!(!hasher().matches(a, &other, &stored));
        assert!(!hasher().matches(b, &code, &stored));
        let other_key = CodeHasher::new(Secret::new("another secret of at least 32 bytes!!"));
        assert!(!other_key.matches(a, &code, &stored));
    }

    #[test]
    fn an_outbox_code_written_before_aead_sealing_still_opens_for_its_verification() {
        // Written by the earlier build for this id and code: digits XOR the keystream.
        let (a, b) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(b"verify-outbox-seal-v1\0");
        mac.update(a.as_bytes());
        let stream = mac.finalize().into_bytes();
        let written: Vec<u8> = b"0042007".iter().zip(stream).map(|(d, k)| d ^ k).collect();
        let code = Code::parse("0042007", CodeLength::new(7).unwrap()).unwrap();
        assert_eq!(hasher().open_pre_aead_outbox_code(a, &written), Some(code.clone()));
        assert_ne!(hasher().open_pre_aead_outbox_code(b, &written), Some(code));
    }

    #[test]
    fn a_code_never_shows_in_debug_output() {
        let code = Code::parse("123456", CodeLength::default()).unwrap();
        assert!(!format!("{code:?}").contains("123456"));
    }

    #[test]
    fn code_length_outside_four_to_ten_is_refused() {
        assert!(CodeLength::new(3).is_none());
        assert!(CodeLength::new(11).is_none());
        assert_eq!(CodeLength::new(10).unwrap().digits(), 10);
    }
}
