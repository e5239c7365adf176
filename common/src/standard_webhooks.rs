//! Standard Webhooks signatures, the symmetric scheme (`v1`): HMAC-SHA256, keyed with the
//! bytes that follow `whsec_` (base64) in the secret, over `{webhook-id}.{webhook-timestamp}.{body}`,
//! sent as `webhook-signature: v1,<base64>`. Receivers verify it with the `standardwebhooks`
//! libraries of every language.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of a symmetric signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret: the decoded bytes of `whsec_<base64>`, 24 to 64 bytes (192 to 512 bits,
/// as the specification asks). Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct EventSecret(Vec<u8>);

impl fmt::Debug for EventSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSecret(..)")
    }
}

impl EventSecret {
    /// Reads `whsec_` followed by standard base64 (padded) of 24 to 64 bytes.
    pub fn parse(value: &str) -> Result<Self, String> {
        let encoded = value
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| format!("must start with {SECRET_PREFIX}"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| format!("must be {SECRET_PREFIX} followed by base64"))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(format!(
                "must hold 24 to 64 bytes after {SECRET_PREFIX}, got {}",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The `webhook-signature` header value of `body` sent as `id` at `timestamp` (Unix seconds).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// What a receiver does: checks that `signatures` (the `webhook-signature` header, one or
    /// more space-separated `v1,<base64>`) holds the signature of `body` sent as `id` at
    /// `timestamp`, and that `timestamp` is within `tolerance` seconds of `now` (replays).
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
        tolerance: i64,
    ) -> Result<(), &'static str> {
        let at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| "webhook-timestamp is not a number")?;
        if (now - at).abs() > tolerance {
            return Err("webhook-timestamp is too far from now");
        }
        let expected = self.sign(id, at, body);
        let matches = signatures
            .split_whitespace()
            .any(|given| bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes())));
        if matches { Ok(()) } else { Err("no matching signature") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the reference libraries' tests (checked against the Python package
    /// `standardwebhooks`).
    #[test]
    fn signs_like_the_reference_libraries() {
        let secret = EventSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_what_it_signs_and_nothing_else() {
        let secret = EventSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let good = secret.sign("msg_1", 1_000, body);
        let other = format!("v1,{}", STANDARD.encode([0u8; 32]));
        assert_eq!(secret.verify("msg_1", "1000", &good, body, 1_100, 300), Ok(()));
        assert_eq!(
            secret.verify("msg_1", "1000", &format!("{other} {good}"), body, 1_000, 300),
            Ok(())
        );
        assert!(secret.verify("msg_2", "1000", &good, body, 1_000, 300).is_err());
        assert!(secret.verify("msg_1", "1000", &good, b"{}", 1_000, 300).is_err());
        assert!(secret.verify("msg_1", "1000", &good, body, 1_301, 300).is_err());
        assert!(secret.verify("msg_1", "soon", &good, body, 1_000, 300).is_err());
        assert!(secret.verify("msg_1", "1000", &other, body, 1_000, 300).is_err());
    }

    #[test]
    fn secrets_need_the_prefix_base64_and_24_to_64_bytes() {
        let of = |n: usize| format!("{SECRET_PREFIX}{}", STANDARD.encode(vec![7u8; n]));
        assert!(EventSecret::parse(&of(24)).is_ok() && EventSecret::parse(&of(64)).is_ok());
        for bad in [
            of(23),
            of(65),
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            "whsec_not base64!".into(),
        ] {
            assert!(EventSecret::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", EventSecret::parse(&of(24)).unwrap()), "EventSecret(..)");
    }
}
