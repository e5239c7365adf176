//! HTTP load at a fixed concurrency, with latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a run of requests gave.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Requests per client address: the load comes from distinct clients, as a signup burst
/// does, each sending this many requests of a kind (its address in `X-Forwarded-For`, which
/// the API believes of the bench: `TRUSTED_PROXIES`).
pub const REQUESTS_PER_CLIENT: usize = 4;

/// The client address of the `i`-th request of a run: `10.x.y.z`, a new one every
/// [`REQUESTS_PER_CLIENT`] requests.
pub fn client_address(i: usize) -> String {
    let n = i / REQUESTS_PER_CLIENT;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// Posts `bodies[i]` to `url` for every i, `concurrency` at a time over kept-alive
/// connections, from client [`client_address`]`(i)`, each with an `Idempotency-Key` of its
/// own when `keyed`; a request counts as an error unless it answers `expect`.
pub async fn post_all(
    url: &str,
    api_key: &str,
    bodies: Vec<Value>,
    concurrency: usize,
    expect: u16,
    keyed: bool,
) -> LoadResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("http client");
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, bodies, next, url, key) = (
                client.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
                url.to_owned(),
                api_key.to_owned(),
            );
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let sent = Instant::now();
                    let mut request = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("X-Forwarded-For", client_address(i))
                        .json(body);
                    if keyed {
                        request = request.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
                    }
                    let ok = match request.send().await {
                        Ok(r) => r.status().as_u16() == expect && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(sent.elapsed());
                    errors += usize::from(!ok);
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut result = LoadResult::default();
    for task in tasks {
        let (latencies, errors) = task.await.expect("load task");
        result.latencies.extend(latencies);
        result.errors += errors;
    }
    result.elapsed = started.elapsed();
    result.requests = result.latencies.len();
    result.latencies.sort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&ms, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&ms, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&ms, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn each_client_address_sends_a_few_requests() {
        assert_eq!(client_address(0), "10.0.0.0");
        assert_eq!(client_address(REQUESTS_PER_CLIENT - 1), "10.0.0.0");
        assert_eq!(client_address(REQUESTS_PER_CLIENT), "10.0.0.1");
        assert_eq!(client_address(REQUESTS_PER_CLIENT * 256), "10.0.1.0");
    }
}
