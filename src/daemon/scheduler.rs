//! When the loop wakes up next, and what for: the next full pass (`interval` plus jitter), a
//! failed instance's retry, a failed hook's retry, or a replaced CA leaving its file (which
//! needs a full pass: the file is rewritten without it).
//!
//! Owns: that decision, on the tokio clock (so tests pause it). It must not sleep or run
//! anything: the loop does.

use std::time::Duration;

use tokio::time::Instant;

use crate::schedule::with_jitter;

/// The moments something else is due (from the sub-states).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The earliest retry of a failed instance.
    pub retry: Option<Instant>,
    /// The earliest retry of a failed hook.
    pub hook: Option<Instant>,
    /// The earliest moment a replaced CA leaves its file.
    pub deadline: Option<Instant>,
}

/// What a wake-up is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A pass over every instance: the interval passed, or an overlap ended.
    Full,
    /// Only the failed instances (and hooks) whose retry has come.
    Retries,
}

/// The loop's clock of full passes.
#[derive(Debug)]
pub struct Scheduler {
    next_full: Instant,
}

impl Scheduler {
    /// The first pass starts at once (SPEC 5.5).
    pub fn new(now: Instant) -> Scheduler {
        Scheduler { next_full: now }
    }

    /// When to wake up: the earliest of the next full pass and everything due.
    pub fn wake_at(&self, due: &Due) -> Instant {
        [Some(self.next_full), due.retry, due.hook, due.deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_full)
    }

    /// What waking up at `now` is for.
    pub fn woke(&self, due: &Due, now: Instant) -> Wake {
        if now >= self.next_full || due.deadline.is_some_and(|d| d <= now) {
            Wake::Full
        } else {
            Wake::Retries
        }
    }

    /// A full pass ended at `now`: the next one comes `interval` plus up to `jitter` later
    /// (`random` in 0..1), saturating.
    pub fn full_pass_done(
        &mut self,
        now: Instant,
        interval: Duration,
        jitter: Duration,
        random: f64,
    ) {
        let wait = with_jitter(interval, jitter, random);
        self.next_full = now.checked_add(wait).unwrap_or(self.next_full);
    }

    /// The next full pass.
    pub fn next_full(&self) -> Instant {
        self.next_full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    // Paused time throughout: the tests move the clock themselves.
    #[tokio::test(start_paused = true)]
    async fn the_first_pass_is_at_once_and_the_next_after_the_interval_plus_jitter() {
        let mut s = Scheduler::new(Instant::now());
        let due = Due::default();
        assert_eq!(s.wake_at(&due), Instant::now());
        assert_eq!(s.woke(&due, Instant::now()), Wake::Full);
        s.full_pass_done(Instant::now(), HOUR, Duration::from_secs(360), 0.5);
        assert_eq!(
            s.next_full(),
            Instant::now() + HOUR + Duration::from_secs(180)
        );
        tokio::time::advance(HOUR).await;
        assert_eq!(
            s.woke(&due, Instant::now()),
            Wake::Retries,
            "not yet: jitter"
        );
        tokio::time::advance(Duration::from_secs(180)).await;
        assert_eq!(s.woke(&due, Instant::now()), Wake::Full);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_wakes_the_loop_early_for_the_failed_instances_only() {
        let mut s = Scheduler::new(Instant::now());
        s.full_pass_done(Instant::now(), HOUR, Duration::ZERO, 0.0);
        let retry = Instant::now() + Duration::from_secs(10);
        let due = Due {
            retry: Some(retry),
            ..Due::default()
        };
        assert_eq!(s.wake_at(&due), retry);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.woke(&due, Instant::now()), Wake::Retries);
    }

    #[tokio::test(start_paused = true)]
    async fn an_owed_hook_wakes_the_loop_without_a_pass() {
        let mut s = Scheduler::new(Instant::now());
        s.full_pass_done(Instant::now(), HOUR, Duration::ZERO, 0.0);
        let hook = Instant::now() + Duration::from_secs(30);
        let due = Due {
            hook: Some(hook),
            ..Due::default()
        };
        assert_eq!(s.wake_at(&due), hook);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(s.woke(&due, Instant::now()), Wake::Retries);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_an_overlap_brings_a_full_pass_before_the_interval() {
        let mut s = Scheduler::new(Instant::now());
        s.full_pass_done(Instant::now(), HOUR, Duration::ZERO, 0.0);
        let overlap_end = Instant::now() + Duration::from_secs(600);
        let due = Due {
            deadline: Some(overlap_end),
            retry: Some(overlap_end + Duration::from_secs(1)),
            ..Due::default()
        };
        assert_eq!(s.wake_at(&due), overlap_end);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(s.woke(&due, Instant::now()), Wake::Full);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_too_long_to_represent_does_not_panic() {
        let mut s = Scheduler::new(Instant::now());
        s.full_pass_done(Instant::now(), Duration::MAX, Duration::MAX, 1.0);
        assert!(s.next_full() >= Instant::now());
    }
}
