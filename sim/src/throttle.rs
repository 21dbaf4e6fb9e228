//! The API gateway's throttling per user (SPEC section 11): one token bucket per user, refilled
//! at the [`RateLimit`]'s `per_second` up to a burst of the same, on tokio's clock (so a test
//! with paused time controls it).
//!
//! Owns who a bucket belongs to ([`UserKey`]) and whether a request may pass; it must not
//! authenticate (the handlers ask it only after `auth` said who is calling, as APIG applies a
//! user's limit after authentication, so an unauthenticated request costs no one a token) nor
//! build the 429 (that is `api`).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::model::RateLimit;
use crate::util;

/// The user a request is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum UserKey {
    /// The account's own keys: the permanent AK/SK (whatever it is set to) and every temporary
    /// credential of the metadata service.
    Account,
    /// The simulator's fixed token (whatever it is set to).
    FixedToken,
    /// An extra user with its own AK/SK, by its access key.
    AkSk(String),
    /// An extra user with its own token, by the order tokens were added in.
    Token(usize),
    /// An IAM user, by user id: its password requests and the tokens IAM issued to it.
    Iam(String),
}

/// One user's bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_second: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(per_second),
            at: now,
        }
    }

    /// Refills for the time since the last call, then takes a token if there is a whole one.
    fn take(&mut self, per_second: u32, now: Instant) -> bool {
        let rate = f64::from(per_second);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Inner {
    limit: Option<RateLimit>,
    buckets: HashMap<UserKey, Bucket>,
}

/// The buckets of one simulator.
pub(crate) struct Throttle {
    inner: Mutex<Inner>,
}

impl Throttle {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                limit,
                buckets: HashMap::new(),
            }),
        }
    }

    /// The limit in force.
    pub(crate) fn limit(&self) -> Option<RateLimit> {
        util::lock(&self.inner).limit
    }

    /// Replaces the limit (`None`: no throttling); every user starts again with a full bucket.
    pub(crate) fn set_limit(&self, limit: Option<RateLimit>) {
        let mut inner = util::lock(&self.inner);
        inner.limit = limit;
        inner.buckets.clear();
    }

    /// Takes a token from `user`'s bucket now; `Err` is the limit that refused the request.
    pub(crate) fn admit(&self, user: &UserKey) -> Result<(), RateLimit> {
        self.admit_at(user, Instant::now())
    }

    fn admit_at(&self, user: &UserKey, now: Instant) -> Result<(), RateLimit> {
        let mut inner = util::lock(&self.inner);
        let Some(limit) = inner.limit else {
            return Ok(());
        };
        let bucket = inner
            .buckets
            .entry(user.clone())
            .or_insert_with(|| Bucket::full(limit.per_second, now));
        if bucket.take(limit.per_second, now) {
            Ok(())
        } else {
            Err(limit)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 4,
        retry_after: None,
    };

    #[test]
    fn a_burst_drains_the_bucket_and_time_refills_it() {
        let t = Throttle::new(Some(LIMIT));
        let start = Instant::now();
        let user = UserKey::Account;
        for _ in 0..4 {
            assert_eq!(t.admit_at(&user, start), Ok(()));
        }
        assert_eq!(t.admit_at(&user, start), Err(LIMIT));
        // A quarter of a second is one token at 4 a second; a refused request takes none.
        let almost = start + Duration::from_millis(240);
        assert_eq!(t.admit_at(&user, almost), Err(LIMIT));
        let later = start + Duration::from_millis(260);
        assert_eq!(t.admit_at(&user, later), Ok(()));
        assert_eq!(t.admit_at(&user, later), Err(LIMIT));
        // A long pause refills up to the burst only.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(t.admit_at(&user, much_later), Ok(()));
        }
        assert_eq!(t.admit_at(&user, much_later), Err(LIMIT));
    }

    #[test]
    fn users_have_their_own_buckets() {
        let t = Throttle::new(Some(RateLimit {
            per_second: 1,
            retry_after: Some(2),
        }));
        let now = Instant::now();
        let alice = UserKey::Iam("alice".to_owned());
        assert!(t.admit_at(&alice, now).is_ok());
        assert!(t.admit_at(&alice, now).is_err());
        assert!(t.admit_at(&UserKey::FixedToken, now).is_ok());
        assert!(t.admit_at(&UserKey::Token(0), now).is_ok());
        assert!(t.admit_at(&UserKey::AkSk("AK".to_owned()), now).is_ok());
        assert!(t.admit_at(&UserKey::Token(0), now).is_err());
    }

    #[test]
    fn no_limit_admits_everything_and_a_new_limit_starts_full() {
        let t = Throttle::new(None);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(t.admit_at(&UserKey::Account, now).is_ok());
        }
        t.set_limit(Some(RateLimit {
            per_second: 1,
            retry_after: None,
        }));
        assert!(t.admit_at(&UserKey::Account, now).is_ok());
        assert!(t.admit_at(&UserKey::Account, now).is_err());
        t.set_limit(Some(LIMIT));
        assert_eq!(t.limit(), Some(LIMIT));
        assert!(t.admit_at(&UserKey::Account, now).is_ok());
        t.set_limit(Some(RateLimit {
            per_second: 0,
            retry_after: None,
        }));
        assert!(
            t.admit_at(&UserKey::Account, now + Duration::from_secs(9))
                .is_err()
        );
        t.set_limit(None);
        assert!(t.admit_at(&UserKey::Account, now).is_ok());
    }
}
