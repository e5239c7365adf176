//! A replica's counts not yet added to PostgreSQL, by prefix and bucket: what a start or an
//! approval adds under the guard's lock, so it allocates only for a prefix or bucket new
//! since the last flush.

use std::collections::HashMap;

use common::guard::Activity;

/// Most (prefix, bucket) counts a replica keeps while PostgreSQL cannot take them; past it,
/// counts for new ones are dropped until a flush works.
const MOST_KEPT: usize = 50_000;

/// Counts of one prefix in one bucket.
#[derive(Debug)]
struct Counts {
    country: String,
    started: i32,
    approved: i32,
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    by_prefix: HashMap<String, HashMap<i64, Counts>>,
    /// (prefix, bucket) counts held.
    entries: usize,
}

impl Pending {
    /// Adds to the counts of `prefix` (of `country`) in `bucket`.
    pub(super) fn add(&mut self, prefix: &str, country: &str, bucket: i64, started: i32, approved: i32) {
        let fresh = || Counts {
            country: country.to_owned(),
            started: 0,
            approved: 0,
        };
        let counts = match self.by_prefix.get_mut(prefix) {
            Some(buckets) => match buckets.get_mut(&bucket) {
                Some(counts) => counts,
                None if self.entries < MOST_KEPT => {
                    self.entries += 1;
                    buckets.entry(bucket).or_insert_with(fresh)
                }
                None => return,
            },
            None if self.entries < MOST_KEPT => {
                self.entries += 1;
                let buckets = self.by_prefix.entry(prefix.to_owned()).or_default();
                buckets.entry(bucket).or_insert_with(fresh)
            }
            None => return,
        };
        counts.started += started;
        counts.approved += approved;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The counts as rows to add.
    pub(super) fn into_rows(self) -> Vec<Activity> {
        self.by_prefix
            .into_iter()
            .flat_map(|(prefix, buckets)| {
                buckets.into_iter().map(move |(bucket, c)| Activity {
                    prefix: prefix.clone(),
                    bucket,
                    country: c.country,
                    started: c.started,
                    approved: c.approved,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_prefix_and_bucket_and_stay_bounded() {
        let mut pending = Pending::default();
        pending.add("+1212", "US", 10, 1, 0);
        pending.add("+1212", "US", 10, 1, 0);
        pending.add("+1212", "US", 20, 0, 1);
        pending.add("+4420", "GB", 10, 1, 0);
        let mut rows = pending.into_rows();
        rows.sort_by(|a, b| (&a.prefix, a.bucket).cmp(&(&b.prefix, b.bucket)));
        let seen: Vec<(&str, i64, i32, i32)> = rows
            .iter()
            .map(|r| (r.prefix.as_str(), r.bucket, r.started, r.approved))
            .collect();
        assert_eq!(seen, [("+1212", 10, 2, 0), ("+1212", 20, 0, 1), ("+4420", 10, 1, 0)]);

        let mut full = Pending::default();
        for bucket in 0..MOST_KEPT as i64 + 10 {
            full.add("+1212", "US", bucket, 1, 0);
        }
        full.add("+1212", "US", 0, 1, 0);
        let rows = full.into_rows();
        assert_eq!(rows.len(), MOST_KEPT);
        assert_eq!(rows.iter().map(|r| r.started).sum::<i32>(), MOST_KEPT as i32 + 1);
    }
}
