//! One key's sliding window, decided in the process over the row read under the key's lock
//! ([`super::batch`]).
//!
//! A limit of up to [`EXACT_UP_TO`] events keeps the time of each of its newest events: it is
//! exact. A larger one (a prefix ceiling sized for a launch burst) counts its events per
//! second, so its row stays small whatever the limit: a second counts until its end has left
//! the window, so such a limit is never exceeded and frees up at most one second late.

use std::time::Duration;

use time::OffsetDateTime;

use super::Limit;

/// The largest limit whose events are kept one by one.
pub const EXACT_UP_TO: u32 = 100;

/// The events of one key: `(time, events)`, oldest first. An exact limit's entries are one
/// event each; a counted limit's are the start of a second and its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub entries: Vec<(OffsetDateTime, u32)>,
}

/// How long an entry of `limit` lasts beyond its time: nothing for an exact limit, the rest
/// of its second for a counted one.
fn width(limit: &Limit) -> Duration {
    if limit.limit > EXACT_UP_TO {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    }
}

/// Whole seconds, at least one (as `Retry-After` says them).
fn whole_seconds(d: time::Duration) -> Duration {
    Duration::from_secs((d.as_seconds_f64().ceil() as u64).max(1))
}

impl Window {
    /// The window as stored: `counts` is `None` when each time is one event.
    pub fn from_row(times: Vec<OffsetDateTime>, counts: Option<Vec<i32>>) -> Self {
        let counts = counts.unwrap_or_default();
        let entries = times
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, counts.get(i).map_or(1, |&c| c.max(1) as u32)))
            .collect();
        Self { entries }
    }

    /// The times, and the counts when any entry holds more than one event.
    pub fn to_row(&self) -> (Vec<OffsetDateTime>, Option<Vec<i32>>) {
        let times = self.entries.iter().map(|(t, _)| *t).collect();
        let counted = self.entries.iter().any(|(_, c)| *c > 1);
        let counts = counted.then(|| self.entries.iter().map(|(_, c)| *c as i32).collect());
        (times, counts)
    }

    /// When the window's newest entry stops counting (the row can then be deleted).
    pub fn expires_at(&self, limit: &Limit) -> Option<OffsetDateTime> {
        self.entries.last().map(|(t, _)| *t + width(limit) + limit.window)
    }

    /// Whether an entry still counts at `now`.
    fn live(limit: &Limit, now: OffsetDateTime) -> impl Fn(&&(OffsetDateTime, u32)) -> bool {
        let span = width(limit) + limit.window;
        move |(t, _)| *t + span > now
    }

    /// `None` when `limit` has room for one more event at `now`, else how long until it has.
    pub fn room(&self, limit: &Limit, now: OffsetDateTime) -> Option<Duration> {
        let live: Vec<&(OffsetDateTime, u32)> = self.entries.iter().filter(Self::live(limit, now)).collect();
        let held: u64 = live.iter().map(|(_, c)| u64::from(*c)).sum();
        if held < u64::from(limit.limit) {
            return None;
        }
        // Room comes when `held - limit + 1` of the oldest events have left the window. `held`
        // is the sum of `live`, so some entry always brings the count that far.
        let must_leave = held - u64::from(limit.limit) + 1;
        let mut left = 0;
        let last_to_leave = live.iter().find(|(_, c)| {
            left += u64::from(*c);
            left >= must_leave
        });
        let at = last_to_leave.map_or(now, |(t, _)| *t);
        Some(whole_seconds(at + width(limit) + limit.window - now))
    }

    /// Records one event at `now`, and forgets what no longer counts: entries out of the
    /// window, and the oldest events beyond the limit.
    pub fn add(&mut self, limit: &Limit, now: OffsetDateTime) {
        let live = Self::live(limit, now);
        self.entries.retain(|e| live(&e));
        if width(limit).is_zero() {
            self.entries.push((now, 1));
        } else {
            let second = now.replace_nanosecond(0).unwrap_or(now);
            match self.entries.last_mut() {
                Some((t, c)) if *t == second => *c += 1,
                _ => self.entries.push((second, 1)),
            }
        }
        let mut held: u64 = self.entries.iter().map(|(_, c)| u64::from(*c)).sum();
        while let Some(&(_, oldest)) = self.entries.first()
            && held - u64::from(oldest) >= u64::from(limit.limit)
        {
            held -= u64::from(oldest);
            self.entries.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(limit: u32, window_secs: u64) -> Limit {
        Limit {
            key: "k".into(),
            limit,
            window: Duration::from_secs(window_secs),
        }
    }

    fn at(seconds: f64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + time::Duration::seconds_f64(seconds)
    }

    #[test]
    fn an_exact_limit_counts_each_event_and_frees_up_when_the_oldest_leaves() {
        let l = limit(3, 60);
        let mut w = Window::default();
        for s in [0.5, 10.0, 20.0] {
            assert_eq!(w.room(&l, at(s)), None);
            w.add(&l, at(s));
        }
        assert_eq!(w.room(&l, at(30.0)), Some(Duration::from_secs(31)));
        assert_eq!(w.room(&l, at(60.4)), Some(Duration::from_secs(1)));
        assert_eq!(w.room(&l, at(60.6)), None);
        w.add(&l, at(60.6));
        assert_eq!(w.entries.len(), 3, "the event that left is forgotten");
        assert_eq!(w.room(&l, at(61.0)), Some(Duration::from_secs(9)));
    }

    #[test]
    fn a_cooldown_of_one_event_reports_the_rest_of_its_window() {
        let l = limit(1, 30);
        let mut w = Window::default();
        w.add(&l, at(0.0));
        assert_eq!(w.room(&l, at(0.0)), Some(Duration::from_secs(30)));
        assert_eq!(w.room(&l, at(29.5)), Some(Duration::from_secs(1)));
        assert_eq!(w.room(&l, at(30.0)), None);
    }

    #[test]
    fn a_large_limit_counts_per_second_and_is_never_exceeded() {
        let l = limit(1_000, 60);
        let mut w = Window::default();
        // 1,000 events over 10 s: 10 entries, not 1,000.
        for i in 0..1_000 {
            w.add(&l, at(f64::from(i) / 100.0));
        }
        assert_eq!(w.entries.len(), 10);
        assert_eq!(w.entries[0].1, 100);
        // Full until the first second's end has left the window (61 s), then room again.
        assert_eq!(w.room(&l, at(60.5)), Some(Duration::from_secs(1)));
        assert_eq!(w.room(&l, at(61.0)), None);
        // Stored with its counts, and read back the same.
        let (times, counts) = w.to_row();
        assert_eq!(Window::from_row(times, counts), w);
    }

    #[test]
    fn an_exact_window_is_stored_without_counts() {
        let l = limit(5, 600);
        let mut w = Window::default();
        w.add(&l, at(0.0));
        w.add(&l, at(0.0));
        let (times, counts) = w.to_row();
        assert_eq!((times.len(), counts), (2, None));
        assert_eq!(w.expires_at(&l), Some(at(600.0)));
    }

    #[test]
    fn a_window_keeps_at_most_its_limit_of_events() {
        let l = limit(2, 60);
        let mut w = Window::default();
        for s in 0..5 {
            w.add(&l, at(f64::from(s)));
        }
        assert_eq!(w.entries.iter().map(|(_, c)| c).sum::<u32>(), 2);
        assert_eq!(w.entries[0].0, at(3.0));
    }
}
