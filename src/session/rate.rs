//! A session's rate limits: token buckets (`governor`) on the frames and the bytes it sends,
//! and a third bucket of violations that, once empty, means the abuse is sustained and the
//! session is closed.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitsConfig;
use crate::metrics::Limit;

/// The window `violations_before_close` is counted over.
pub const VIOLATION_WINDOW: Duration = Duration::from_secs(10);

/// The quotas every session gets, computed once from the configuration; `None` is no limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    frames: Option<Quota>,
    bytes: Option<Quota>,
    violations: Option<Quota>,
}

impl RateLimits {
    pub fn from_config(config: &RateLimitsConfig) -> Self {
        Self {
            frames: quota(config.frames_per_second, config.frame_burst),
            bytes: quota(config.bytes_per_second, config.byte_burst),
            violations: NonZeroU32::new(config.violations_before_close).and_then(|n| {
                Quota::with_period(VIOLATION_WINDOW / n.get()).map(|q| q.allow_burst(n))
            }),
        }
    }
}

/// `rate` per second with `burst` at once; `None` when `rate` is 0.
pub fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst.max(rate.get())).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// What to do with one incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Pass,
    /// Drop it and say so.
    Refuse(Limit),
    /// The session has been refused too often: close it.
    Close(Limit),
}

/// One session's buckets.
pub struct SessionRates {
    frames: Option<DefaultDirectRateLimiter>,
    bytes: Option<DefaultDirectRateLimiter>,
    violations: Option<DefaultDirectRateLimiter>,
}

impl SessionRates {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            frames: limits.frames.map(RateLimiter::direct),
            bytes: limits.bytes.map(RateLimiter::direct),
            violations: limits.violations.map(RateLimiter::direct),
        }
    }

    /// Takes one frame of `len` bytes from the buckets.
    pub fn check(&self, len: usize) -> RateVerdict {
        let over = if self.frames.as_ref().is_some_and(|b| b.check().is_err()) {
            Limit::Frames
        } else if self.bytes.as_ref().is_some_and(|b| {
            let n = NonZeroU32::new(u32::try_from(len).unwrap_or(u32::MAX));
            n.is_some_and(|n| !matches!(b.check_n(n), Ok(Ok(()))))
        }) {
            Limit::Bytes
        } else {
            return RateVerdict::Pass;
        };
        match &self.violations {
            Some(violations) if violations.check().is_err() => RateVerdict::Close(over),
            _ => RateVerdict::Refuse(over),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(fps: u32, burst: u32, violations: u32) -> RateLimitsConfig {
        RateLimitsConfig {
            frames_per_second: fps,
            frame_burst: burst,
            bytes_per_second: 0,
            byte_burst: 0,
            violations_before_close: violations,
            connections_per_ip_per_second: 0,
            connection_burst: 0,
        }
    }

    #[test]
    fn a_burst_passes_then_frames_are_refused_then_the_session_is_closed() {
        let rates = SessionRates::new(&RateLimits::from_config(&config(1, 5, 3)));
        let verdicts: Vec<RateVerdict> = (0..10).map(|_| rates.check(10)).collect();
        assert_eq!(&verdicts[..5], &[RateVerdict::Pass; 5]);
        assert_eq!(&verdicts[5..8], &[RateVerdict::Refuse(Limit::Frames); 3]);
        assert_eq!(verdicts[8], RateVerdict::Close(Limit::Frames));
    }

    #[test]
    fn bytes_are_limited_apart_from_frames() {
        let mut c = config(0, 0, 0);
        c.bytes_per_second = 100;
        c.byte_burst = 100;
        let rates = SessionRates::new(&RateLimits::from_config(&c));
        assert_eq!(rates.check(60), RateVerdict::Pass);
        assert_eq!(rates.check(60), RateVerdict::Refuse(Limit::Bytes));
        // A frame larger than the whole burst can never pass.
        assert_eq!(rates.check(1000), RateVerdict::Refuse(Limit::Bytes));
    }

    #[test]
    fn zero_turns_limits_off() {
        let rates = SessionRates::new(&RateLimits::from_config(&config(0, 0, 0)));
        assert!((0..10_000).all(|_| rates.check(1 << 20) == RateVerdict::Pass));
    }
}
