-- The event triggers' statements keep their cached plans on every connection.
--
-- The batch statements run on connections with `plan_cache_mode = force_custom_plan`
-- (`common::db::custom_plan_pool`), and a trigger runs with its statement's settings: every
-- event a batch raised (a worker's 201s, say) planned `verify_event`'s call and its INSERT
-- again, as many plans as events (33,010 plans for 33,500 events in a bench run). The
-- setting is the statements' business, not the triggers': they run with the default.
ALTER FUNCTION verify_event(text, verifications, text, text, integer) SET plan_cache_mode = auto;
ALTER FUNCTION verifications_events() SET plan_cache_mode = auto;
ALTER FUNCTION verification_steps_events() SET plan_cache_mode = auto;
