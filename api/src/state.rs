//! What every handler shares.

use std::sync::Arc;

use common::broker::Publisher;
use common::code::CodeHasher;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::config::ApiConfig;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: ApiConfig,
    pub pool: PgPool,
    pub publisher: Publisher,
    pub hasher: CodeHasher,
    pub metrics: PrometheusHandle,
    /// SHA-256 of each accepted API key: comparing fixed-length digests keeps the
    /// comparison's time independent of the keys' lengths and contents.
    api_key_digests: Vec<[u8; 32]>,
}

impl AppState {
    pub fn new(config: ApiConfig, pool: PgPool, publisher: Publisher, metrics: PrometheusHandle) -> Self {
        let api_key_digests = config.api_keys.iter().map(|k| digest(k.expose())).collect();
        let hasher = CodeHasher::new(config.verify_secret.clone());
        Self(Arc::new(Inner {
            config,
            pool,
            publisher,
            hasher,
            metrics,
            api_key_digests,
        }))
    }

    /// Whether `token` is one of `API_KEYS`. Every key is compared, in constant time, so
    /// neither timing nor position tells an attacker anything; several keys may be active
    /// at once, which is how keys are rotated.
    pub fn accepts_api_key(&self, token: &str) -> bool {
        let given = digest(token);
        self.api_key_digests
            .iter()
            .fold(subtle::Choice::from(0), |found, key| found | key.ct_eq(&given))
            .into()
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
