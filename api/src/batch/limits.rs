//! The rate limits (and daily budgets) of concurrent starts and checks, taken by one
//! transaction ([`common::limits::take_many`]): a burst pays a commit per batch, not per
//! request. Requests are decided in arrival order, so two starts of one number, or many
//! from one address, in the same batch count exactly as if they came one after the other.

use common::limits::{self, Ask, Refusal};
use sqlx::PgPool;

use super::{LANES, Lanes, answer, retry_conflicts, split};
use crate::error::ApiError;

/// A handle to the limit taker.
pub struct LimitTaker(Lanes<Ask, Option<Refusal>>);

impl LimitTaker {
    /// The handle, and the taker's loop for the caller to run, like [`super::StartWriter::new`].
    pub fn new(pool: PgPool) -> (Self, Vec<impl Future<Output = ()> + Send + 'static>) {
        let (lanes, loops) = Lanes::new("the rate-limit taker", LANES, true, move |batch| {
            let pool = pool.clone();
            async move {
                let (asks, replies) = split(batch);
                let taken = retry_conflicts(|| limits::take_many(&pool, &asks)).await;
                answer(replies, taken, "taking a batch of rate limits");
            }
        });
        (Self(lanes), loops)
    }

    /// Takes what `ask` asks for: `None` when admitted (and counted), else why not (and
    /// nothing counted).
    pub async fn take(&self, ask: Ask) -> Result<Option<Refusal>, ApiError> {
        self.0.ask(String::new(), ask).await
    }
}
