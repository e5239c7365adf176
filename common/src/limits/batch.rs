//! The limits of many requests taken in one transaction: their keys locked and read by
//! `rate_read`, each request decided here in order (all of its limits and its budget, or
//! nothing), and every key and budget written back by one statement. Four round trips and
//! one commit (which does not wait for its WAL flush) for the whole batch, where taking them
//! one request at a time cost a transaction each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::window::Window;
use super::{Limit, Refusal};

/// What one request takes: one event under each limit and, with `budget` (a country and its
/// daily budget), one SMS of the country's budget for today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub limits: Vec<Limit>,
    pub budget: Option<(String, u32)>,
}

/// Takes what each of `asks` asks for, in order, as if they came one after the other:
/// `None` for a request admitted (and counted), else why not (and nothing of it counted).
pub async fn take_many(pool: &PgPool, asks: &[Ask]) -> sqlx::Result<Vec<Option<Refusal>>> {
    let keys: BTreeSet<&str> = asks
        .iter()
        .flat_map(|a| a.limits.iter().map(|l| l.key.as_str()))
        .collect();
    let countries: BTreeSet<&str> = asks
        .iter()
        .filter_map(|a| a.budget.as_ref().map(|(c, _)| c.as_str()))
        .collect();
    if keys.is_empty() && countries.is_empty() {
        return Ok(vec![None; asks.len()]);
    }
    let mut tx = pool.begin().await?;
    let rows = sqlx::query("SELECT key, times, counts, used, now FROM rate_read($1, $2)")
        .bind(keys.iter().copied().collect::<Vec<_>>())
        .bind(countries.iter().copied().collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    let mut now = None;
    let mut windows: HashMap<String, Window> = HashMap::new();
    let mut used: HashMap<String, u32> = HashMap::new();
    for row in rows {
        now = Some(row.try_get::<OffsetDateTime, _>("now")?);
        let Some(key) = row.try_get::<Option<String>, _>("key")? else {
            continue;
        };
        match key.strip_prefix("budget:") {
            Some(country) => {
                used.insert(country.to_owned(), row.try_get::<i32, _>("used")?.max(0) as u32);
            }
            None => {
                let window = Window::from_row(row.try_get("times")?, row.try_get("counts")?);
                windows.insert(key, window);
            }
        }
    }
    let now = now.ok_or(sqlx::Error::RowNotFound)?;
    let mut decided = Decided {
        now,
        windows,
        used,
        limits: BTreeMap::new(),
        spent: BTreeMap::new(),
    };
    let answers: Vec<Option<Refusal>> = asks.iter().map(|ask| decided.take(ask)).collect();
    if !decided.limits.is_empty() || !decided.spent.is_empty() {
        decided.write(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(answers)
}

/// The batch's keys and budgets as its requests take them.
struct Decided {
    now: OffsetDateTime,
    windows: HashMap<String, Window>,
    used: HashMap<String, u32>,
    /// The keys taken from, with the limit they were last taken under.
    limits: BTreeMap<String, Limit>,
    /// SMS taken from each country's budget today.
    spent: BTreeMap<String, u32>,
}

impl Decided {
    fn take(&mut self, ask: &Ask) -> Option<Refusal> {
        if let Some((country, budget)) = &ask.budget {
            let used = self.used.get(country).copied().unwrap_or(0) + self.spent.get(country).copied().unwrap_or(0);
            if used >= *budget {
                let today = self.now.to_offset(time::UtcOffset::UTC).date();
                let left = today.next_day().map_or(86_400.0, |tomorrow| {
                    (tomorrow.midnight().assume_utc() - self.now)
                        .as_seconds_f64()
                        .ceil()
                        .max(1.0)
                });
                return Some(Refusal::Budget(Duration::from_secs(left as u64)));
            }
        }
        let empty = Window::default();
        for (i, limit) in ask.limits.iter().enumerate() {
            let window = self.windows.get(&limit.key).unwrap_or(&empty);
            if let Some(retry_after) = window.room(limit, self.now) {
                return Some(Refusal::Limit(i, retry_after));
            }
        }
        for limit in &ask.limits {
            self.windows.entry(limit.key.clone()).or_default().add(limit, self.now);
            self.limits.insert(limit.key.clone(), limit.clone());
        }
        if let Some((country, _)) = &ask.budget {
            *self.spent.entry(country.clone()).or_default() += 1;
        }
        None
    }

    /// Writes every key taken from, whole (its lock is held), and adds what was spent of
    /// each budget; one statement.
    async fn write(&self, tx: &mut sqlx::PgConnection) -> sqlx::Result<()> {
        let (mut keys, mut from, mut to, mut counted, mut expires) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut times, mut counts) = (Vec::<OffsetDateTime>::new(), Vec::<i32>::new());
        for (key, limit) in &self.limits {
            let window = &self.windows[key];
            let (t, c) = window.to_row();
            from.push(times.len() as i32 + 1);
            to.push((times.len() + t.len()) as i32);
            counted.push(c.is_some());
            counts.extend(c.unwrap_or_else(|| vec![1; t.len()]));
            times.extend(t);
            expires.push(window.expires_at(limit).unwrap_or(self.now));
            keys.push(key.as_str());
        }
        let today = self.now.to_offset(time::UtcOffset::UTC).date();
        let (countries, spent): (Vec<&str>, Vec<i32>) = self.spent.iter().map(|(c, n)| (c.as_str(), *n as i32)).unzip();
        sqlx::query(
            "WITH windows AS ( \
               INSERT INTO rate_limits AS r (key, times, counts, expires_at) \
               SELECT k.key, ($2::timestamptz[])[k.lo : k.hi], CASE WHEN k.counted THEN ($3::int[])[k.lo : k.hi] END, k.expires_at \
               FROM unnest($1::text[], $4::int[], $5::int[], $6::bool[], $7::timestamptz[]) AS k(key, lo, hi, counted, expires_at) \
               ON CONFLICT (key) DO UPDATE SET times = excluded.times, counts = excluded.counts, expires_at = excluded.expires_at) \
             INSERT INTO sms_budgets AS b (country, day, used) \
             SELECT c, $8::date, n FROM unnest($9::text[], $10::int[]) AS u(c, n) \
             ON CONFLICT (country, day) DO UPDATE SET used = b.used + excluded.used",
        )
        .bind(keys)
        .bind(times)
        .bind(counts)
        .bind(from)
        .bind(to)
        .bind(counted)
        .bind(expires)
        .bind(today)
        .bind(countries)
        .bind(spent)
        .execute(tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(key: &str, limit: u32) -> Limit {
        Limit {
            key: key.into(),
            limit,
            window: Duration::from_secs(60),
        }
    }

    fn decided(used: &[(&str, u32)]) -> Decided {
        Decided {
            now: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            windows: HashMap::new(),
            used: used.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
            limits: BTreeMap::new(),
            spent: BTreeMap::new(),
        }
    }

    #[test]
    fn requests_of_one_batch_are_decided_one_after_the_other() {
        let mut d = decided(&[]);
        let ask = |keys: &[&str]| Ask {
            limits: keys.iter().map(|k| limit(k, 2)).collect(),
            budget: None,
        };
        assert_eq!(d.take(&ask(&["ip:a", "number:1"])), None);
        assert_eq!(d.take(&ask(&["ip:a", "number:2"])), None);
        // `ip:a` is full: refused at its index, and `number:3` is not taken.
        assert!(matches!(
            d.take(&ask(&["number:3", "ip:a"])),
            Some(Refusal::Limit(1, _))
        ));
        assert_eq!(d.take(&ask(&["number:3"])), None);
        assert_eq!(d.windows["number:3"].entries.len(), 1);
        assert_eq!(d.limits.len(), 4, "every key taken from is written back");
    }

    #[test]
    fn a_budget_is_spent_by_the_batch_and_refuses_past_it() {
        let mut d = decided(&[("US", 8)]);
        let ask = Ask {
            limits: vec![],
            budget: Some(("US".into(), 10)),
        };
        assert_eq!(d.take(&ask), None);
        assert_eq!(d.take(&ask), None);
        let Some(Refusal::Budget(left)) = d.take(&ask) else {
            panic!("the eleventh SMS of the day was admitted")
        };
        // 1,800,000,000 is 08:00 UTC: 16 hours to the next UTC day.
        assert_eq!(left, Duration::from_secs(16 * 3600));
        assert_eq!(d.spent["US"], 2);
        // A refused start takes no limit either.
        let limited = Ask {
            limits: vec![limit("ip:b", 5)],
            budget: Some(("US".into(), 10)),
        };
        assert!(d.take(&limited).is_some());
        assert!(!d.windows.contains_key("ip:b"));
    }
}
