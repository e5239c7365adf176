//! Codes in transit: sealed with XChaCha20-Poly1305 (an AEAD) between the start that makes a
//! code and the worker that texts it, in the outbox row and in the RabbitMQ job alike.
//!
//! The keys come from `CODE_SEALING_KEYS`, a comma-separated list of secrets: the first seals,
//! every one opens, so a key can be rotated without a job in flight becoming unreadable. Each
//! secret goes through HKDF-SHA256 into a 256-bit cipher key and a 4-byte key id that travels in
//! the sealed bytes, so opening picks its key without trying them all. A sealed code is bound
//! to its verification id (associated data): it opens for no other verification, and any
//! change to it is detected. `verify-api` seals; `verify-worker` opens; neither needs the other's
//! secrets (the worker never holds `VERIFY_SECRET`, which keys the stored code digests).
//!
//! Layout: `version (1) | key id (4) | nonce (24, random) | ciphertext + tag (16)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use crate::code::Code;
use crate::settings::{Secret, SettingError};

/// The setting that holds the keys.
pub const SETTING_NAME: &str = "CODE_SEALING_KEYS";
/// Shortest secret accepted (bytes).
pub const MIN_KEY_BYTES: usize = 32;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const SALT: &[u8] = b"verify-code-sealing";

struct SealingKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    fn derive(secret: &[u8]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), secret);
        let mut key = [0u8; 32];
        let mut id = [0u8; KEY_ID_LEN];
        hkdf.expand(b"code-seal-v1 key", &mut key)
            .expect("32 bytes is a valid HKDF length");
        hkdf.expand(b"code-seal-v1 key id", &mut id)
            .expect("4 bytes is a valid HKDF length");
        Self {
            id,
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }
}

/// The keys of `CODE_SEALING_KEYS`: the first seals, all open.
#[derive(Clone)]
pub struct Sealer {
    keys: std::sync::Arc<[SealingKey]>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys, [redacted])", self.keys.len())
    }
}

/// A sealed code that cannot be opened: sealed under a key that is not in the list, changed,
/// or meant for another verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sealed code cannot be opened ({0})")]
pub struct OpenError(&'static str);

impl Sealer {
    /// The keys from the secrets, first one sealing. At least one, each of
    /// [`MIN_KEY_BYTES`] or more, no two alike.
    pub fn new(secrets: &[Secret]) -> Result<Self, SettingError> {
        let problem = |p: String| SettingError::new(SETTING_NAME, p);
        if secrets.is_empty() {
            return Err(problem("needs at least one key".into()));
        }
        if let Some(short) = secrets.iter().find(|s| s.expose().len() < MIN_KEY_BYTES) {
            return Err(problem(format!(
                "every key must be at least {MIN_KEY_BYTES} bytes, one has {}",
                short.expose().len()
            )));
        }
        let keys: Vec<SealingKey> = secrets
            .iter()
            .map(|s| SealingKey::derive(s.expose().as_bytes()))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(problem("lists the same key twice".into()));
            }
        }
        Ok(Self { keys: keys.into() })
    }

    /// Reads `CODE_SEALING_KEYS` (comma-separated secrets).
    pub fn from_list(list: &str) -> Result<Self, SettingError> {
        let secrets: Vec<Secret> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect();
        Self::new(&secrets)
    }

    /// The code sealed under the first key, for verification `id`.
    pub fn seal(&self, id: Uuid, code: &Code) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(id);
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: code.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message of a few bytes");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The code that [`Sealer::seal`] sealed for verification `id`, under any of the keys.
    pub fn open(&self, id: Uuid, sealed: &[u8]) -> Result<Code, OpenError> {
        if sealed.len() <= HEADER_LEN || sealed[0] != VERSION {
            return Err(OpenError("not a sealed code of this version"));
        }
        let (key_id, rest) = sealed[1..].split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(OpenError("sealed under a key not in CODE_SEALING_KEYS"))?;
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError("bad nonce"))?;
        let aad = associated_data(id);
        let digits = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError("changed, or sealed for another verification"))?;
        let text = String::from_utf8(digits).map_err(|_| OpenError("not digits"))?;
        Code::parse_any_length(&text).ok_or(OpenError("not a code"))
    }

    /// [`Sealer::seal`] as text, for a JSON job (URL-safe base64 without padding).
    pub fn seal_text(&self, id: Uuid, code: &Code) -> String {
        to_text(&self.seal(id, code))
    }

    /// [`Sealer::open`] of [`Sealer::seal_text`]'s text.
    pub fn open_text(&self, id: Uuid, sealed: &str) -> Result<Code, OpenError> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| OpenError("not base64"))?;
        self.open(id, &bytes)
    }
}

fn associated_data(id: Uuid) -> [u8; 28] {
    let mut aad = [0u8; 28];
    aad[..12].copy_from_slice(b"verify-code\0");
    aad[12..].copy_from_slice(id.as_bytes());
    aad
}

/// URL-safe base64 of sealed bytes (an outbox row's, copied into its job unopened).
pub fn to_text(sealed: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::CodeLength;

    const OLD: &str = "an old sealing key of at least 32 bytes";
    const NEW: &str = "a new sealing key that is also 32 bytes or more";

    fn code(digits: &str) -> Code {
        Code::parse(digits, CodeLength::new(digits.len() as u8).unwrap()).unwrap()
    }

    #[test]
    fn a_sealed_code_opens_for_its_verification_and_shows_no_digits() {
        let sealer = Sealer::from_list(OLD).unwrap();
        let id = Uuid::new_v4();
        let sealed = sealer.seal(id, &code("0042007"));
        assert!(!sealed.windows(7).any(|w| w == b"0042007"));
        assert_eq!(sealer.open(id, &sealed).unwrap(), code("0042007"));
        let text = sealer.seal_text(id, &code("123456"));
        assert!(!text.contains("123456"));
        assert_eq!(sealer.open_text(id, &text).unwrap(), code("123456"));
        assert_ne!(
            sealer.seal(id, &code("123456")),
            sealer.seal(id, &code("123456")),
            "fresh nonce each time"
        );
    }

    #[test]
    fn another_verification_a_changed_byte_or_an_unknown_key_cannot_open_it() {
        let sealer = Sealer::from_list(OLD).unwrap();
        let id = Uuid::new_v4();
        let sealed = sealer.seal(id, &code("123456"));
        assert!(sealer.open(Uuid::new_v4(), &sealed).is_err());
        for i in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[i] ^= 0x01;
            assert!(sealer.open(id, &changed).is_err(), "byte {i} changed and still opened");
        }
        assert!(sealer.open(id, &sealed[..sealed.len() - 1]).is_err());
        assert!(sealer.open(id, b"123456").is_err());
        let stranger = Sealer::from_list(NEW).unwrap();
        assert_eq!(
            stranger.open(id, &sealed).unwrap_err(),
            OpenError("sealed under a key not in CODE_SEALING_KEYS")
        );
    }

    #[test]
    fn while_rotating_both_keys_open_and_the_first_seals() {
        let before = Sealer::from_list(OLD).unwrap();
        let rotating = Sealer::from_list(&format!("{NEW}, {OLD}")).unwrap();
        let after = Sealer::from_list(NEW).unwrap();
        let id = Uuid::new_v4();
        let old_job = before.seal(id, &code("111111"));
        assert_eq!(rotating.open(id, &old_job).unwrap(), code("111111"));
        let new_job = rotating.seal(id, &code("222222"));
        assert_eq!(after.open(id, &new_job).unwrap(), code("222222"));
        assert!(before.open(id, &new_job).is_err());
    }

    #[test]
    fn short_missing_or_repeated_keys_are_refused_by_name() {
        for bad in ["", " , ", "short", &format!("{OLD},{OLD}")] {
            let err = Sealer::from_list(bad).unwrap_err();
            assert_eq!(err.name, SETTING_NAME, "{bad:?}");
            assert!(!err.to_string().contains(OLD), "{err}");
        }
    }
}
