//! The key as a request sends it: the header, its checks, the API key's scope, and the
//! request's fingerprint.

use std::fmt::Write as _;

use axum::http::{HeaderValue, Method};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The longest key.
pub const MAX_LEN: usize = 255;

/// 1 to 255 visible ASCII characters (and spaces), else 400.
pub(super) fn parse_key(value: &HeaderValue) -> Result<String, ApiError> {
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.trim().is_empty() && k.len() <= MAX_LEN && k.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "Idempotency-Key must be 1 to {MAX_LEN} visible ASCII characters"
            ))
        })?;
    Ok(key.to_owned())
}

/// The API key's scope: a digest of the bearer token (the token is never stored).
pub(super) fn scope(authorization: Option<&HeaderValue>) -> String {
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map_or("", str::trim);
    let digest = Sha256::digest(token.as_bytes());
    digest[..16].iter().fold(String::with_capacity(32), |mut hex, b| {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// SHA-256 of the method, the path and the body; a JSON body in a canonical form (keys
/// sorted, no spaces), so that the same request sent with other spacing or key order is the
/// same request. The canonical form is serde_json's own output: its objects keep their keys
/// sorted (a B-tree map; the test below fails if a build ever turns on `preserve_order`).
/// It is written straight into the hash.
pub(super) fn fingerprint(method: &Method, path: &str, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in [method.as_str().as_bytes(), b"\n", path.as_bytes(), b"\n"] {
        hasher.update(part);
    }
    let written = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|value| serde_json::to_writer(Hashing(&mut hasher), &value).is_ok());
    if !written {
        hasher.update(body);
    }
    hasher.finalize().to_vec()
}

/// Writes into a hash.
struct Hashing<'a>(&'a mut Sha256);

impl std::io::Write for Hashing<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_json_in_another_spacing_or_order_is_the_same_request() {
        let start = |body: &[u8]| fingerprint(&Method::POST, "/v1/verifications", body);
        let a = start(br#"{"phone_number":"+1","channels":["sms","call"]}"#);
        let b = start(b"{ \"channels\": [\"sms\", \"call\"],\n \"phone_number\": \"+1\" }");
        assert_eq!(a, b);
        let nested = |body: &[u8]| fingerprint(&Method::POST, "/v1/x", body);
        assert_eq!(
            nested(br#"{"b":{"y":1,"x":2},"a":0}"#),
            nested(br#"{"a":0,"b":{"x":2,"y":1}}"#)
        );
        let other_order = start(br#"{"phone_number":"+1","channels":["call","sms"]}"#);
        let other_path = fingerprint(
            &Method::POST,
            "/v1/verifications/check",
            br#"{"phone_number":"+1","channels":["sms","call"]}"#,
        );
        assert!(a != other_order && a != other_path);
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255_characters_and_scopes_differ_per_api_key() {
        let ok = |k: &str| parse_key(&HeaderValue::from_str(k).unwrap()).is_ok();
        assert!(ok("a") && ok(&"k".repeat(255)) && ok("9f1c-22 signup/retry"));
        assert!(!ok("") && !ok("   ") && !ok(&"k".repeat(256)));
        assert!(parse_key(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()).is_err());
        let one = scope(Some(&HeaderValue::from_static("Bearer key-one-0123456789")));
        let two = scope(Some(&HeaderValue::from_static("Bearer key-two-0123456789")));
        assert!(one != two && one.len() == 32 && !one.contains("key-one"));
    }
}
