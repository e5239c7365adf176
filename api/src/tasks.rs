//! Every background task of the API, started here and only here, on one [`TaskTracker`]: the
//! pipeline behind the request path (start writers, check reservers, dispatchers, settler)
//! and the periodic tasks (outbox relay, fallback sweeper, expiry sweeper, event relay, rate-limit janitor, retention
//! sweeper, queue monitor, the pumping guard's sync and evaluation); and how they stop
//! ([`Tasks::stop`]).
//!
//! The pipeline's loops end on their own once the handles that feed them are gone: the batch
//! writers when the request path's [`StartWriter`] and [`CheckReserver`] are dropped (with
//! the router, after the last request), the dispatchers when the writers and the last
//! [`Dispatcher`] handle are, the settler after the dispatchers. So every committed start is
//! handed to a dispatcher and every confirmed job to the settler before those end. The
//! periodic tasks stop on the cancellation token.

use std::sync::Arc;
use std::time::Duration;

use common::broker::Publisher;
use common::code::CodeHasher;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{CheckReserver, KeyTaker, LimitTaker, StartWriter};
use crate::config::ApiConfig;
use crate::outbox::{Dispatcher, Relay, Settler};
use crate::pumping::{Guard, Snapshot};

/// How often the queue gauges are refreshed.
const MONITOR_EVERY: Duration = Duration::from_secs(5);
/// How often the due fallbacks are looked for (a step moves on at most this late).
const FALLBACK_EVERY: Duration = Duration::from_secs(1);
/// How often codes that ran out are marked expired (an expiry event comes at most this late).
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// The least time the tasks get to end, even when the requests used up the grace period:
/// the settler's last statement deletes the rows of the jobs the drain just published.
const LEAST_WAIT: Duration = Duration::from_secs(1);

/// What the request path holds of the background tasks.
pub struct Pipeline {
    pub starts: StartWriter,
    pub checks: CheckReserver,
    /// Takes the requests' `Idempotency-Key`s.
    pub keys: KeyTaker,
    /// Takes the requests' rate limits and budgets.
    pub limits: LimitTaker,
    /// For the drain at shutdown: every start writer holds one too.
    pub dispatcher: Dispatcher,
    /// The pumping guard, whose counts and pauses the tasks keep in step with PostgreSQL.
    pub guard: Arc<Guard>,
    /// The guard's last evaluation, for `/metrics`.
    pub guard_metrics: Arc<Snapshot>,
}

/// The running background tasks.
pub struct Tasks {
    tracker: TaskTracker,
    /// Stops the periodic tasks.
    cancel_periodic: CancellationToken,
}

impl Tasks {
    /// Starts every background task. The periodic ones run until `cancel_periodic` is cancelled (or
    /// [`Tasks::stop`]); the pipeline's until its handles, returned here, are dropped.
    pub fn start(
        config: &ApiConfig,
        pool: &PgPool,
        batch_pool: &PgPool,
        publisher: &Arc<Publisher>,
        hasher: &CodeHasher,
        cancel_periodic: CancellationToken,
    ) -> (Self, Pipeline) {
        let tasks = Self {
            tracker: TaskTracker::new(),
            cancel_periodic,
        };

        let (settler, settling) = Settler::new(batch_pool.clone());
        tasks.tracker.spawn(settling);
        let (dispatcher, dispatching) = Dispatcher::new(Arc::clone(publisher), settler);
        let (starts, writing) = StartWriter::new(
            batch_pool.clone(),
            config.outbox_relay_after.as_secs() as i64,
            dispatcher.clone(),
        );
        let (checks, reserving) = CheckReserver::new(batch_pool.clone());
        let (keys, taking) = KeyTaker::new(pool.clone(), crate::idempotency::LEASE_SECONDS);
        let (limits, limiting) = LimitTaker::new(pool.clone());
        for pipeline_loop in dispatching {
            tasks.tracker.spawn(pipeline_loop);
        }
        for pipeline_loop in writing {
            tasks.tracker.spawn(pipeline_loop);
        }
        for pipeline_loop in reserving {
            tasks.tracker.spawn(pipeline_loop);
        }
        for pipeline_loop in taking {
            tasks.tracker.spawn(pipeline_loop);
        }
        for pipeline_loop in limiting {
            tasks.tracker.spawn(pipeline_loop);
        }

        // The relay looks at the outbox a few times per relay age.
        let relay_every = (config.outbox_relay_after / 3).max(Duration::from_secs(1));
        let relay = Relay::new(
            batch_pool.clone(),
            Arc::clone(publisher),
            config.shared.sealer.clone(),
            hasher.clone(),
        );
        tasks.spawn_periodic(relay.run(relay_every, tasks.cancel_periodic.clone()));
        tasks.spawn_periodic(crate::fallback::run(
            pool.clone(),
            dispatcher.clone(),
            config.outbox_relay_after.as_secs() as i64,
            FALLBACK_EVERY,
        ));
        tasks.spawn_periodic(crate::events::expire(pool.clone(), EXPIRE_EVERY));
        if config.shared.events.enabled() {
            tasks.spawn_periodic(crate::events::relay(pool.clone(), Arc::clone(publisher)));
        }
        tasks.spawn_periodic(crate::abuse::forget_expired(
            pool.clone(),
            tasks.cancel_periodic.clone(),
        ));
        tasks.spawn_periodic(common::retention::run(
            pool.clone(),
            config.shared.retention_days,
            tasks.cancel_periodic.clone(),
        ));
        let guard = Guard::new(
            config.pumping.clone(),
            config.abuse.rate_limits && config.abuse.prefix_starts_per_minute > 0,
            config.abuse.prefix_pause,
        );
        let guard_metrics = Arc::new(Snapshot::new(&config.abuse.daily_sms_budget));
        tasks.spawn_periodic(crate::monitor::run(
            pool.clone(),
            Arc::clone(publisher),
            Arc::clone(&guard),
            MONITOR_EVERY,
            tasks.cancel_periodic.clone(),
        ));
        // Not cut short by the cancellation: it ends on it, after a last flush of its counts.
        tasks.tracker.spawn(crate::pumping::sync(
            Arc::clone(&guard),
            pool.clone(),
            tasks.cancel_periodic.clone(),
        ));
        tasks.spawn_periodic(crate::pumping::evaluate(
            Arc::clone(&guard),
            config.abuse.daily_sms_budget.clone(),
            Arc::clone(&guard_metrics),
            pool.clone(),
            tasks.cancel_periodic.clone(),
        ));

        (
            tasks,
            Pipeline {
                starts,
                checks,
                keys,
                limits,
                dispatcher,
                guard,
                guard_metrics,
            },
        )
    }

    /// Runs `task` until the periodic tasks are stopped; a round under way then ends at once
    /// (the relay's taken rows come due again after their lease, a sweep's or the janitor's
    /// statement rolls back).
    fn spawn_periodic(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker
            .spawn(self.cancel_periodic.clone().run_until_cancelled_owned(task));
    }

    /// Stops the periodic tasks (if not yet) and waits until every task has ended, until
    /// `deadline` but at least [`LEAST_WAIT`]. The pipeline's handles must be dropped first, or
    /// its loops wait for them, and this for the deadline.
    pub async fn stop(self, deadline: Instant) {
        self.cancel_periodic.cancel();
        self.tracker.close();
        let deadline = deadline.max(Instant::now() + LEAST_WAIT);
        if tokio::time::timeout_at(deadline, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                running = self.tracker.len(),
                "background tasks did not end within the grace period"
            );
        }
    }
}
