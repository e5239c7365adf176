//! What every handler shares: the settings (with the code sealer), the pool, the publisher,
//! the code hasher, the limits, the API keys, and the handles to the batch writers. Built
//! from parts made elsewhere (the background tasks are started by `crate::tasks`); only the
//! routes, extractors and authentication depend on it.

use std::sync::Arc;

use common::broker::Publisher;
use common::code::CodeHasher;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use common::settings::Secret;

use crate::abuse::Limits;
use crate::batch::{CheckReserver, KeyTaker, StartWriter};
use crate::config::ApiConfig;
use crate::pumping::{Guard, Snapshot};
use crate::tasks::Pipeline;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: ApiConfig,
    pub pool: PgPool,
    pub publisher: Arc<Publisher>,
    pub hasher: CodeHasher,
    pub metrics: PrometheusHandle,
    pub api_keys: ApiKeys,
    /// The abuse rules and rate limits.
    pub limits: Limits,
    /// The pumping guard's counts and pauses.
    pub guard: Arc<Guard>,
    /// The conversion and budget metrics of the guard's last evaluation.
    pub guard_metrics: Arc<Snapshot>,
    pub starts: StartWriter,
    pub checks: CheckReserver,
    pub keys: KeyTaker,
    /// The keys of starts under way in this process ([`crate::idempotency::InFlight`]).
    pub keys_in_flight: crate::idempotency::InFlight,
}

impl AppState {
    /// `pipeline` holds the handles of the batch writers and of the guard, started by
    /// `crate::tasks`.
    pub fn new(
        config: ApiConfig,
        pool: PgPool,
        publisher: Arc<Publisher>,
        hasher: CodeHasher,
        metrics: PrometheusHandle,
        pipeline: Pipeline,
    ) -> Self {
        let Pipeline {
            starts,
            checks,
            keys,
            limits,
            guard,
            guard_metrics,
            dispatcher: _,
        } = pipeline;
        Self(Arc::new(Inner {
            api_keys: ApiKeys::new(&config.api_keys),
            limits: Limits::new(config.abuse.clone(), Arc::clone(&guard), pool.clone(), limits),
            guard,
            guard_metrics,
            config,
            pool,
            publisher,
            hasher,
            metrics,
            starts,
            checks,
            keys,
            keys_in_flight: Default::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The accepted API keys, kept as SHA-256 digests.
///
/// Constant time by construction: a presented token is hashed, and its fixed-length digest
/// is compared with `subtle` against every key, without stopping at a match, so neither the
/// keys' lengths, their contents nor which key matched shows in the timing. Several keys may
/// be active at once, which is how keys are rotated.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(keys: &[Secret]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k.expose())).collect(),
        }
    }

    pub fn accepts(&self, token: &str) -> bool {
        let given = digest(token);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, key| found | key.ct_eq(&given))
            .into()
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_key_is_accepted_and_nothing_else() {
        let keys = ApiKeys::new(&[Secret::new("old-key-0123456789"), Secret::new("new-key-0123456789")]);
        assert!(keys.accepts("old-key-0123456789"));
        assert!(keys.accepts("new-key-0123456789"));
        for wrong in [
            "",
            "old-key-012345678",
            "old-key-0123456789 ",
            "OLD-KEY-0123456789",
            "new-key",
        ] {
            assert!(!keys.accepts(wrong), "{wrong:?}");
        }
    }
}
