//! The `Idempotency-Key`s that requests take before they run, taken by one statement for
//! concurrent requests.

use common::repo::{self, IdempotencyKey};
use sqlx::PgPool;

use super::{LANES, Lanes, Request, answer, split};
use crate::error::ApiError;

/// A handle to the key takers: the `Idempotency-Key`s of concurrent requests are taken by
/// one statement ([`repo::take_idempotency_keys`]); a key appears at most once per statement.
pub struct KeyTaker(Lanes<(IdempotencyKey, String), bool>);

impl KeyTaker {
    /// The handle, and the takers' loops for the caller to run, like [`StartWriter::new`].
    pub fn new(pool: PgPool, lease_seconds: f64) -> (Self, Vec<impl Future<Output = ()> + Send + 'static>) {
        let (lanes, loops) = Lanes::new("the idempotency key taker", LANES, false, move |batch| {
            let pool = pool.clone();
            async move { take_keys(&pool, batch, lease_seconds).await }
        });
        (Self(lanes), loops)
    }

    /// Takes `key` for the request `holder`: `true` if it is now the request's, `false` if
    /// it is taken (then [`repo::take_idempotency_key`] says by what).
    pub async fn take(&self, key: IdempotencyKey, holder: String) -> Result<bool, ApiError> {
        let name = format!("{}\n{}", key.scope, key.key);
        self.0.ask(name, (key, holder)).await
    }
}

async fn take_keys(pool: &PgPool, batch: Vec<Request<(IdempotencyKey, String), bool>>, lease_seconds: f64) {
    let keys: Vec<(&IdempotencyKey, &str)> = batch.iter().map(|r| (&r.item.0, r.item.1.as_str())).collect();
    let taken = repo::take_idempotency_keys(pool, &keys, lease_seconds).await;
    answer(split(batch).1, taken, "taking a batch of idempotency keys");
}
