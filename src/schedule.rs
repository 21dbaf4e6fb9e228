//! Pure timing math: pass interval jitter, per-instance backoff, and in-pass retries that
//! honour `Retry-After` (SPEC 5).
//!
//! Owns: every "how long to wait" decision, as plain functions of their inputs. Randomness
//! comes in as a number in `[0, 1]` (`rand01`) and the clock as a `SystemTime` argument.
//! Must not: sleep, read the clock, draw random numbers or do any other I/O; the daemon does
//! that and asks this module for durations, so that all of it is unit-testable.

use std::time::{Duration, SystemTime};

/// Longest `Retry-After` that certsync honours within a pass; a longer one is capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Tries of one request within a pass (for 429 and 5xx answers): the first plus two retries.
pub const PASS_TRIES: u32 = 3;

/// Base delay of the first in-pass retry when no `Retry-After` was given; it doubles with
/// every further attempt.
const PASS_RETRY_BASE: Duration = Duration::from_millis(500);

/// Exponential backoff for an instance (or hook) that keeps failing: `initial`, doubling with
/// each consecutive failure, capped at `max`, with "equal jitter" so that instances failing
/// together do not retry in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub initial: Duration,
    /// Upper bound of the delay (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// Delay before the next try after `consecutive_failures` failures in a row:
    /// `d = min(initial * 2^(n-1), max)`, then a value in `[d/2, d]` picked by `rand01`.
    /// No failures means no delay.
    pub fn delay(&self, consecutive_failures: u32, rand01: f64) -> Duration {
        if consecutive_failures == 0 {
            return Duration::ZERO;
        }
        let d = doubled(self.initial, consecutive_failures - 1).min(self.max);
        let half = d / 2;
        half + (d - half).mul_f64(unit(rand01))
    }
}

/// `base` plus a random share of `jitter`: `base + jitter * rand01` (saturating).
pub fn with_jitter(base: Duration, jitter: Duration, rand01: f64) -> Duration {
    // try_from: `mul_f64` panics when the product is not a representable duration.
    let extra = Duration::try_from_secs_f64(jitter.as_secs_f64() * unit(rand01)).unwrap_or(jitter);
    base.saturating_add(extra)
}

/// Reads an HTTP `Retry-After` value: delta-seconds or an HTTP-date (relative to `now`).
/// A date in the past gives zero, never a negative wait; anything unreadable gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and a huge wait is capped by the caller anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Wait before in-pass try number `attempt + 1`, after `attempt` tries failed (1-based):
/// the server's `Retry-After` capped at [`MAX_RETRY_AFTER`] when it sent one, else
/// 500 ms doubling per attempt (500 ms, 1 s, 2 s, ...).
pub fn in_pass_retry_delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER),
        None => doubled(PASS_RETRY_BASE, attempt.saturating_sub(1)),
    }
}

/// `d * 2^doublings`, saturating at `Duration::MAX`.
fn doubled(d: Duration, doublings: u32) -> Duration {
    let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
    if doublings >= 32 && !d.is_zero() {
        return Duration::MAX;
    }
    d.saturating_mul(factor)
}

/// Clamps a random number into `[0, 1]` (NaN counts as 0) so that `Duration::mul_f64`
/// can never panic.
fn unit(rand01: f64) -> f64 {
    if rand01.is_nan() {
        0.0
    } else {
        rand01.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn backoff() -> Backoff {
        Backoff {
            initial: S(10),
            max: S(600),
        }
    }

    #[test]
    fn no_failure_no_delay() {
        assert_eq!(backoff().delay(0, 1.0), Duration::ZERO);
    }

    #[test]
    fn delay_doubles_then_caps() {
        let b = backoff();
        // rand01 = 1 gives the top of the jitter range, which is the undithered delay.
        let top: Vec<u64> = (1..=8).map(|n| b.delay(n, 1.0).as_secs()).collect();
        assert_eq!(top, vec![10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(b.delay(u32::MAX, 1.0), S(600));
        assert_eq!(b.delay(40, 1.0), S(600));
    }

    #[test]
    fn jitter_spans_half_to_full() {
        let b = backoff();
        assert_eq!(b.delay(3, 0.0), S(20));
        assert_eq!(b.delay(3, 0.5), S(30));
        assert_eq!(b.delay(3, 1.0), S(40));
        for i in 0..=100 {
            let d = b.delay(5, i as f64 / 100.0);
            assert!(d >= S(80) && d <= S(160), "{d:?}");
        }
    }

    #[test]
    fn out_of_range_random_numbers_are_clamped() {
        let b = backoff();
        assert_eq!(b.delay(1, -3.0), S(5));
        assert_eq!(b.delay(1, 7.0), S(10));
        assert_eq!(b.delay(1, f64::NAN), S(5));
        assert_eq!(with_jitter(S(60), S(6), f64::INFINITY), S(66));
    }

    #[test]
    fn max_below_initial_wins() {
        let b = Backoff {
            initial: S(100),
            max: S(30),
        };
        assert_eq!(b.delay(1, 1.0), S(30));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let b = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(b.delay(5, 1.0), Duration::MAX);
        assert_eq!(with_jitter(Duration::MAX, S(1), 1.0), Duration::MAX);
    }

    #[test]
    fn jitter_adds_a_share() {
        assert_eq!(with_jitter(S(3600), S(360), 0.0), S(3600));
        assert_eq!(with_jitter(S(3600), S(360), 0.5), S(3780));
        assert_eq!(with_jitter(S(3600), S(360), 1.0), S(3960));
        assert_eq!(with_jitter(S(3600), Duration::ZERO, 0.7), S(3600));
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::UNIX_EPOCH + S(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(S(0)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(S(u64::MAX))
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(S(30))
        );
        // The obsolete formats HTTP still requires recipients to accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", now),
            Some(S(30))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:07 1994", now),
            Some(S(30))
        );
        // In the past: retry now, never a negative wait.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn in_pass_delay_honours_and_caps_retry_after() {
        assert_eq!(in_pass_retry_delay(1, Some(S(7))), S(7));
        assert_eq!(in_pass_retry_delay(2, Some(S(3600))), MAX_RETRY_AFTER);
        assert_eq!(in_pass_retry_delay(1, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn in_pass_delay_doubles_without_retry_after() {
        let ms = |n| in_pass_retry_delay(n, None).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [500, 1000, 2000, 4000]);
        assert_eq!(ms(0), 500);
        assert_eq!(in_pass_retry_delay(u32::MAX, None), Duration::MAX);
    }
}
