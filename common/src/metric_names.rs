//! Every metric the service exports, named once, with its help text. Names follow
//! Prometheus conventions: a `verify_` prefix, base units, `_total` on counters,
//! `_seconds` on durations.

pub const VERIFICATIONS_STARTED: &str = "verify_verifications_started_total";
pub const TEST_STARTS: &str = "verify_test_verifications_started_total";
pub const CHECKS: &str = "verify_checks_total";
pub const HTTP_REQUESTS: &str = "verify_http_requests_total";
pub const HTTP_DURATION: &str = "verify_http_request_duration_seconds";
pub const CALLBACKS: &str = "verify_delivery_callbacks_total";
pub const TIME_TO_DELIVERED: &str = "verify_time_to_delivered_seconds";
pub const PREFIX_PAUSES: &str = "verify_prefix_pauses_total";
pub const STARTS_REFUSED: &str = "verify_starts_refused_total";
pub const PUMPING_SUSPECTED: &str = "verify_pumping_suspected_total";
pub const PUMPING_EVALUATIONS: &str = "verify_pumping_evaluations_total";
pub const PUMPING_JUDGED_UNTIL: &str = "verify_pumping_judged_until_seconds";
// Rendered from the guard's last evaluation (a bounded label set), not kept by the recorder.
pub const CONVERSION_RATIO: &str = "verify_conversion_ratio";
pub const CONVERSION_MATURED: &str = "verify_conversion_matured_starts";
pub const PREFIX_RECENT_STARTS: &str = "verify_prefix_recent_starts";
pub const PREFIX_CONVERSION_RATIO: &str = "verify_prefix_conversion_ratio";
pub const SMS_BUDGET_USED: &str = "verify_sms_budget_used";
pub const SMS_BUDGET_LIMIT: &str = "verify_sms_budget_limit";
pub const OUTBOX_RELAYED: &str = "verify_outbox_relayed_total";
pub const EVENTS_PUBLISHED: &str = "verify_events_published_total";
pub const EVENTS_WAITING: &str = "verify_events_waiting";
pub const EVENT_DELIVERIES: &str = "verify_event_deliveries_total";
pub const EVENT_DELIVERY_DURATION: &str = "verify_event_delivery_duration_seconds";
pub const FALLBACKS: &str = "verify_fallbacks_total";
pub const QUEUE_READY: &str = "verify_queue_messages_ready";
pub const QUEUE_CONSUMERS: &str = "verify_queue_consumers";
pub const OLDEST_QUEUED_AGE: &str = "verify_oldest_queued_age_seconds";
pub const DEAD_LETTER_MESSAGES: &str = "verify_dead_letter_messages";
pub const SEND_ATTEMPTS: &str = "verify_sms_send_attempts_total";
pub const TWILIO_DURATION: &str = "verify_twilio_request_duration_seconds";
pub const TIME_TO_SUBMITTED: &str = "verify_time_to_submitted_seconds";
pub const SENDS_IN_FLIGHT: &str = "verify_sends_in_flight";
pub const JOBS: &str = "verify_jobs_total";
pub const DEAD_LETTERS: &str = "verify_dead_letters_total";
pub const BATCH_CONFLICTS: &str = "verify_batch_statement_retries_total";
pub const RETENTION_DELETED: &str = "verify_retention_deleted_total";

/// Registers the help text of every metric (shown as `# HELP` in the scrape).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        VERIFICATIONS_STARTED,
        "Verifications started (202 answered), test numbers apart"
    );
    describe_counter!(TEST_STARTS, "Verifications of TEST_NUMBERS started (nothing sent)");
    describe_counter!(
        CHECKS,
        "Code checks, by outcome (approved, wrong_code, max_attempts_reached, not_found)"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by route, method and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route and method"
    );
    describe_counter!(CALLBACKS, "Signed Twilio status callbacks, by message status");
    describe_histogram!(TIME_TO_DELIVERED, Unit::Seconds, "From start to the delivered callback");
    describe_counter!(
        PREFIX_PAUSES,
        "Number prefixes paused (SMS pumping suspected, or PREFIX_STARTS_PER_MINUTE reached)"
    );
    describe_counter!(
        STARTS_REFUSED,
        "Starts refused with 429, by reason (rate_limited, suspected_pumping, budget_exhausted)"
    );
    describe_counter!(
        PUMPING_SUSPECTED,
        "Prefixes the pumping guard suspected, by mode (on: paused; monitor: only alerted)"
    );
    describe_counter!(
        PUMPING_EVALUATIONS,
        "Evaluations of the pumping guard run by this replica"
    );
    describe_gauge!(
        PUMPING_JUDGED_UNTIL,
        Unit::Seconds,
        "Unix time before which every start has been judged by the pumping guard's last evaluation"
    );
    describe_counter!(
        FALLBACKS,
        "Verifications moved on to their next channel, by that channel and why (failed, no_approval)"
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        "Events published to the events queue by the event relay"
    );
    describe_gauge!(
        EVENTS_WAITING,
        "Events written in PostgreSQL and not yet published to RabbitMQ"
    );
    describe_counter!(
        EVENT_DELIVERIES,
        "Tries to POST an event to EVENTS_URL, by event type and outcome (delivered, retried, dead_lettered)"
    );
    describe_histogram!(
        EVENT_DELIVERY_DURATION,
        Unit::Seconds,
        "Time of one POST of an event to EVENTS_URL, answer or failure"
    );
    describe_counter!(
        OUTBOX_RELAYED,
        "Send jobs published by the outbox relay (their start's process failed)"
    );
    describe_gauge!(
        QUEUE_READY,
        "Messages ready in each queue (passive declare, refreshed every few seconds)"
    );
    describe_gauge!(QUEUE_CONSUMERS, "Consumers attached to each queue");
    describe_gauge!(
        OLDEST_QUEUED_AGE,
        Unit::Seconds,
        "Age of the oldest verification whose SMS is still queued"
    );
    describe_gauge!(DEAD_LETTER_MESSAGES, "Messages in the dead-letter queue");
    describe_counter!(
        SEND_ATTEMPTS,
        "Twilio create-message calls, by outcome and Twilio error code"
    );
    describe_histogram!(
        TWILIO_DURATION,
        Unit::Seconds,
        "Twilio API latency, by operation (create, list)"
    );
    describe_histogram!(
        TIME_TO_SUBMITTED,
        Unit::Seconds,
        "From the start of a channel step (the verification's start, or its fallback) to Twilio's 201"
    );
    describe_gauge!(
        SENDS_IN_FLIGHT,
        "Twilio calls this worker has in flight or is about to make (its slots in use)"
    );
    describe_counter!(JOBS, "Send jobs finished by a worker, by outcome");
    describe_counter!(DEAD_LETTERS, "Jobs a worker put into the dead-letter queue");
    describe_counter!(
        RETENTION_DELETED,
        "Rows deleted past RETENTION_DAYS, by table (verifications with their attempts; delivery events)"
    );
    describe_counter!(
        BATCH_CONFLICTS,
        "Batched statements run again after a conflict with another replica or batch, by kind (pending_number, deadlock, claim_deadlock)"
    );
}

/// Makes the unlabelled counters and gauges of `names` show in the scrape from the start
/// (at 0), so alerts and dashboards see a series before the first event.
pub fn register(names: &[&'static str]) {
    for name in names {
        if name.ends_with("_total") {
            metrics::counter!(*name).increment(0);
        } else {
            metrics::gauge!(*name).increment(0.0);
        }
    }
}
