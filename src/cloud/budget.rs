//! The request budget of one account (SPEC 15): a token bucket per endpoint that every API
//! request of the account (download-link, ListInstances, IAM) takes a token from, and the
//! pause of the whole account after the gateway answers 429.
//!
//! Owns: the bucket's arithmetic and the pause. A leaf: it knows endpoints only as strings and
//! never sends a request.
//!
//! Written by hand rather than with a rate-limiting crate, on purpose: the bucket is a
//! reservation scheme (GCRA, "virtual scheduling"): each request is given the earliest
//! moment it may go, in the order it asked, and sleeps until then. So the instances of a pass
//! go out in order and no waiter wakes only to find the bucket empty again; and a 429 must
//! move every endpoint of the account at once, which the crates' keyed limiters do not do.
//! Time is tokio's, so that paused-time tests see the waits exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// `max_requests_per_second` when left out (SPEC 15).
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 5.0;

/// The shortest pause after a 429 without `Retry-After` (SPEC 15: 2 to 5 s, with jitter).
pub const THROTTLE_PAUSE_MIN: Duration = Duration::from_secs(2);
/// The longest pause after a 429 without `Retry-After`.
pub const THROTTLE_PAUSE_MAX: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured; a longer one pauses this long.
pub const MAX_THROTTLE_PAUSE: Duration = crate::schedule::MAX_RETRY_AFTER;

/// Told of every 429 the account is paused for (the daemon counts them in
/// `certsync_api_throttled_total{account}`).
pub type ThrottleObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// One account's budget. Shared (in an `Arc`) by the API client and the credentials of the
/// account, so that every request of the account, whichever instance it serves, draws on it.
pub struct Budget {
    account: String,
    /// Seconds between two tokens: `1 / max_requests_per_second`.
    interval: Duration,
    /// How far ahead of the steady rate a burst may run: `(burst - 1) * interval`.
    tolerance: Duration,
    state: Mutex<State>,
    observer: Option<ThrottleObserver>,
}

#[derive(Default)]
struct State {
    /// Per endpoint (scheme, host and port): the theoretical arrival time of the next request
    /// at the steady rate.
    next: HashMap<String, Instant>,
    /// No request of the account goes before this (a 429 was answered).
    paused_until: Option<Instant>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("account", &self.account)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// A budget of `per_second` requests a second per endpoint, with a burst of as many
    /// (rounded up, at least one). `per_second` must be positive and finite (config checks
    /// it); anything else is taken as the default.
    pub fn new(account: &str, per_second: f64) -> Budget {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            DEFAULT_MAX_REQUESTS_PER_SECOND
        };
        let interval = Duration::try_from_secs_f64(1.0 / per_second).unwrap_or(Duration::MAX);
        // Burst = the rate (SPEC 15), rounded up; at least one request may always go.
        let burst = per_second.ceil().max(1.0);
        let tolerance = Duration::try_from_secs_f64(interval.as_secs_f64() * (burst - 1.0))
            .unwrap_or(Duration::MAX);
        Budget {
            account: account.to_string(),
            interval,
            tolerance,
            state: Mutex::new(State::default()),
            observer: None,
        }
    }

    /// The same budget, telling `observer` of every 429.
    pub fn with_observer(mut self, observer: ThrottleObserver) -> Budget {
        self.observer = Some(observer);
        self
    }

    /// The account's name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Waits for a token for a request to `endpoint` (scheme, host and port of the URL),
    /// and for the end of any pause of the account.
    pub async fn take(&self, endpoint: &url::Url) -> Waited {
        let key = endpoint_key(endpoint);
        let started = Instant::now();
        loop {
            let at = self.reserve(&key, Instant::now());
            tokio::time::sleep_until(at).await;
            // A 429 answered while this request waited pauses it too: reserve again, after
            // the pause.
            if !self.paused_at(Instant::now()) {
                return Waited(Instant::now().saturating_duration_since(started));
            }
        }
    }

    /// Pauses every request of the account after a 429: until `retry_after` (at most
    /// [`MAX_THROTTLE_PAUSE`]), else for 2 to 5 s with jitter (`rand01` in `[0, 1]`). After
    /// the pause the buckets start empty, so the account resumes at its steady rate rather
    /// than with a burst. Returns the pause.
    pub fn throttled(&self, retry_after: Option<Duration>, rand01: f64) -> Duration {
        let pause = match retry_after {
            Some(wait) => wait.min(MAX_THROTTLE_PAUSE),
            None => {
                let spread = THROTTLE_PAUSE_MAX.saturating_sub(THROTTLE_PAUSE_MIN);
                let jitter = if rand01.is_nan() {
                    0.0
                } else {
                    rand01.clamp(0.0, 1.0)
                };
                THROTTLE_PAUSE_MIN.saturating_add(spread.mul_f64(jitter))
            }
        };
        let now = Instant::now();
        let until = now.checked_add(pause).unwrap_or(now);
        {
            let mut state = self.lock();
            let until = state.paused_until.map_or(until, |p| p.max(until));
            state.paused_until = Some(until);
            let empty_from = until.checked_add(self.tolerance).unwrap_or(until);
            for next in state.next.values_mut() {
                *next = (*next).max(empty_from);
            }
        }
        tracing::warn!(account = %self.account, ?pause, "the API gateway throttled the account (429): pausing every request of the account");
        if let Some(observer) = &self.observer {
            observer(&self.account);
        }
        pause
    }

    /// The moment a request to `key` asked for at `now` may go, and books it.
    fn reserve(&self, key: &str, now: Instant) -> Instant {
        let mut state = self.lock();
        let (floor, fresh) = match state.paused_until {
            // An endpoint first used during a pause starts empty after it, as the others do.
            Some(until) if until > now => {
                (until, until.checked_add(self.tolerance).unwrap_or(until))
            }
            _ => (now, now),
        };
        let next = state.next.entry(key.to_string()).or_insert(fresh);
        // GCRA: the request may go `tolerance` ahead of its theoretical arrival time.
        let theoretical = (*next).max(floor);
        let at = theoretical
            .checked_sub(self.tolerance)
            .map_or(floor, |early| early.max(floor));
        *next = theoretical
            .checked_add(self.interval)
            .unwrap_or(theoretical);
        at
    }

    fn paused_at(&self, now: Instant) -> bool {
        self.lock().paused_until.is_some_and(|until| until > now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few instants, consistent after every statement: a panic elsewhere
        // while it was held cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a request waited for its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited(pub Duration);

/// The bucket an URL's requests draw on: its scheme, host and port.
fn endpoint_key(url: &url::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    /// Takes `n` tokens one after another and gives the moment each was granted, as an
    /// offset from the start.
    async fn grants(budget: &Budget, endpoint: &url::Url, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            budget.take(endpoint).await;
            out.push(Instant::now() - start);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_the_rate_then_the_steady_rate() {
        let budget = Budget::new("default", 5.0);
        let api = url("https://api.example.com/v3/p/instances");
        let times = grants(&budget, &api, 8).await;
        let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 0, 0, 200, 400, 600]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_endpoint_has_its_own_bucket() {
        let budget = Budget::new("default", 1.0);
        let api = url("https://api.example.com/a");
        let same = url("https://api.example.com:443/b?x=1");
        let iam = url("https://iam.example.com/v3/auth/tokens");
        assert_eq!(grants(&budget, &api, 1).await, [Duration::ZERO]);
        assert_eq!(grants(&budget, &iam, 1).await, [Duration::ZERO]);
        // The same endpoint (the default port written out): the next token a second later.
        assert_eq!(grants(&budget, &same, 1).await, [Duration::from_secs(1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fractional_rate_spaces_requests_and_still_lets_one_go() {
        let budget = Budget::new("slow", 0.5);
        let api = url("https://api.example.com/");
        let times = grants(&budget, &api, 3).await;
        assert_eq!(
            times,
            [
                Duration::ZERO,
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_takers_are_served_in_the_order_they_asked() {
        let budget = Arc::new(Budget::new("default", 2.0));
        let api = url("https://api.example.com/");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (budget, api, order) = (budget.clone(), api.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                budget.take(&api).await;
                order.lock().unwrap().push((i, Instant::now()));
            }));
            // Let each task ask before the next is spawned.
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        let ids: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
        let first = order[0].1;
        let ms: Vec<u128> = order
            .iter()
            .map(|(_, t)| (*t - first).as_millis())
            .collect();
        assert_eq!(ms, [0, 0, 500, 1000, 1500, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_endpoint_of_the_account_then_resumes_at_the_steady_rate() {
        let observed = Arc::new(Mutex::new(Vec::new()));
        let seen = observed.clone();
        let budget = Budget::new("eu", 10.0).with_observer(Arc::new(move |account: &str| {
            seen.lock().unwrap().push(account.to_string())
        }));
        let api = url("https://api.example.com/");
        let iam = url("https://iam.example.com/");
        let start = Instant::now();
        budget.take(&api).await;
        assert_eq!(
            budget.throttled(Some(Duration::from_secs(7)), 0.5),
            Duration::from_secs(7)
        );
        // No burst right after the pause: every endpoint's bucket fills from empty at the
        // steady rate (the API's has two tokens by 7.1 s, as the IAM one had).
        let expected = [
            (&iam, 7_000),
            (&iam, 7_100),
            (&api, 7_100),
            (&api, 7_100),
            (&api, 7_200),
        ];
        for (endpoint, at) in expected {
            budget.take(endpoint).await;
            assert_eq!((Instant::now() - start).as_millis(), at);
        }
        assert_eq!(*observed.lock().unwrap(), ["eu"]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_retry_after_the_pause_is_two_to_five_seconds_and_long_waits_are_capped() {
        let budget = Budget::new("default", 5.0);
        assert_eq!(budget.throttled(None, 0.0), THROTTLE_PAUSE_MIN);
        assert_eq!(budget.throttled(None, 1.0), THROTTLE_PAUSE_MAX);
        assert_eq!(budget.throttled(None, f64::NAN), THROTTLE_PAUSE_MIN);
        assert_eq!(budget.throttled(None, 7.0), THROTTLE_PAUSE_MAX);
        let mid = budget.throttled(None, 0.5);
        assert_eq!(mid, Duration::from_millis(3_500));
        assert_eq!(
            budget.throttled(Some(Duration::from_secs(86_400)), 0.0),
            MAX_THROTTLE_PAUSE
        );
        assert_eq!(
            budget.throttled(Some(Duration::MAX), 0.0),
            MAX_THROTTLE_PAUSE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waiting_for_its_token_also_waits_out_a_pause_that_began_meanwhile() {
        let budget = Arc::new(Budget::new("default", 1.0));
        let api = url("https://api.example.com/");
        let start = Instant::now();
        budget.take(&api).await;
        let waiter = {
            let (budget, api) = (budget.clone(), api.clone());
            tokio::spawn(async move {
                budget.take(&api).await;
                Instant::now()
            })
        };
        // The waiter has its slot at 1 s; a 429 at 0.5 s pauses the account for 3 s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        budget.throttled(Some(Duration::from_secs(3)), 0.0);
        let granted = waiter.await.unwrap();
        assert!(
            granted - start >= Duration::from_millis(3_500),
            "{:?}",
            granted - start
        );
    }

    #[test]
    fn absurd_rates_never_panic() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300, 1e300] {
            let b = Budget::new("x", rate);
            assert!(b.interval <= Duration::MAX);
        }
    }
}
