//! When and how soon `Parlor` reconnects, without any I/O so it can be tested alone: which
//! close codes mean "come back" and which "stay away" (the same split as `web/parlor.js`),
//! which failed connection attempts are worth another, the sentence a person should read for
//! a close, and exponential backoff with full jitter whose randomness is passed in.

use std::time::Duration;

use parlor_protocol::close;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::ClientError;

/// The code a WebSocket library reports for a close frame without a status code (RFC 6455
/// section 7.4.1; never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// The code reported for a connection that ended without a close frame: a reset, a lost
/// network, a server that stopped answering (RFC 6455 section 7.4.1; never sent on the wire).
pub const ABNORMAL: u16 = 1006;

/// Close codes after which the client comes back by itself: the server going away (1001, a
/// shutdown: resume elsewhere or once it is back), no status (1005), a lost connection (1006),
/// a server error (1011), service restart (1012), try again later (1013), a bad gateway (1014)
/// and the heartbeat timeout (4000). Every other code means "do not come back": the client's
/// own close (1000), a protocol error or an oversized message (1002, 1007, 1009), a policy
/// close such as rate limits or a slow consumer (1008), kicked (4001), replaced by a resume on
/// another connection (4002), and codes this client does not know.
pub const RECONNECT_CODES: [u16; 8] = [
    close::GOING_AWAY,
    NO_STATUS,
    ABNORMAL,
    close::INTERNAL_ERROR,
    1012,
    1013,
    1014,
    close::HEARTBEAT_TIMEOUT,
];

/// Whether a connection closed with `code` is worth reconnecting (see `RECONNECT_CODES`).
pub fn should_reconnect(code: u16) -> bool {
    RECONNECT_CODES.contains(&code)
}

/// Whether a connection attempt that failed with `err` is worth another. The server's HTTP
/// refusals that will not change by themselves (401 a bad or missing token, 403 an origin,
/// 400/404/426 not a Parlor endpoint) and errors in the client's own settings stop the
/// reconnecting; network failures, timeouts, 429 (too many connections from this address) and
/// 503 (the node is full or shutting down) and other server errors are retried.
pub fn should_retry(err: &ClientError) -> bool {
    match err {
        ClientError::Rejected { status, .. } => *status == 429 || *status >= 500,
        ClientError::Tls(_) | ClientError::InvalidToken => false,
        ClientError::WebSocket(err) => !matches!(
            **err,
            tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_)
        ),
        _ => true,
    }
}

/// How a connection ended: its close code (`ABNORMAL` when there was no close frame) and
/// reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    pub code: u16,
    pub reason: String,
}

impl CloseInfo {
    /// From the close frame the server sent, if any.
    pub fn from_frame(frame: Option<&CloseFrame>) -> Self {
        match frame {
            Some(frame) => Self {
                code: frame.code.into(),
                reason: frame.reason.to_string(),
            },
            None => Self::abnormal(""),
        }
    }

    /// A connection that ended without a close frame, and why the client thinks it did.
    pub fn abnormal(reason: impl Into<String>) -> Self {
        Self {
            code: ABNORMAL,
            reason: reason.into(),
        }
    }

    /// Whether the client comes back after this close (see `RECONNECT_CODES`).
    pub fn should_reconnect(&self) -> bool {
        should_reconnect(self.code)
    }

    /// What happened, in a sentence a player understands (see `explain_close`).
    pub fn explain(&self) -> &'static str {
        explain_close(self.code)
    }
}

/// What a close code means, in a sentence for people rather than a number (PROTOCOL.md
/// section 12). Applications show it when the connection ends.
pub fn explain_close(code: u16) -> &'static str {
    match code {
        close::NORMAL => "The connection was closed.",
        close::GOING_AWAY => "The server is restarting or shutting down.",
        close::PROTOCOL_ERROR | close::INVALID_PAYLOAD => {
            "The server could not understand this client (a protocol error)."
        }
        close::POLICY_VIOLATION => {
            "The server disconnected this client for sending too much, or for falling too far behind."
        }
        close::MESSAGE_TOO_BIG => "The server disconnected this client for sending a message that is too large.",
        close::INTERNAL_ERROR => "The server ran into an internal error.",
        1012 => "The server is restarting.",
        1013 => "The server is too busy right now.",
        1014 => "A gateway between here and the server failed.",
        close::HEARTBEAT_TIMEOUT => "The server heard nothing from this client for too long.",
        close::KICKED => "The server removed you.",
        close::REPLACED => "Your session was taken over by another connection (another window or device).",
        NO_STATUS => "The server closed the connection without saying why.",
        ABNORMAL => "The connection to the server was lost.",
        _ => "The server closed the connection.",
    }
}

/// How `Parlor` reconnects: attempt `n` waits a delay drawn uniformly between zero and
/// `min(max_delay, min_delay * 2^(n-1))` (exponential backoff with full jitter, so that many
/// clients cut at once do not all come back at once); after `max_attempts` failed attempts in
/// a row (`None`: no limit) the client closes for good. The defaults are those of parlor.js:
/// 500 ms, 10 s, no limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

/// The attempts of one series of reconnections (sans-IO: the caller sleeps, and may pass its
/// own randomness to `next_with`).
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: ReconnectPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// The attempts made since the last `reset`.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The longest delay before attempt `attempt` (counted from 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^30 times any delay is already decades: the exponent stops there, and the product
        // saturates rather than overflow.
        let factor = 1u32 << attempt.saturating_sub(1).min(30);
        self.policy
            .min_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay)
    }

    /// The next attempt's number and delay, with `unit` (in [0, 1)) as the random draw; `None`
    /// once `max_attempts` attempts have been made: give up.
    pub fn next_with(&mut self, unit: f64) -> Option<(u32, Duration)> {
        if self
            .policy
            .max_attempts
            .is_some_and(|most| self.attempt >= most)
        {
            return None;
        }
        self.attempt += 1;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some((self.attempt, self.ceiling(self.attempt).mul_f64(unit)))
    }

    /// The next attempt's number and delay, drawn at random.
    pub fn next_delay(&mut self) -> Option<(u32, Duration)> {
        self.next_with(fastrand::f64())
    }

    /// A connection was made: the next series starts again from the first, shortest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_ms: u64, max_ms: u64, max_attempts: Option<u32>) -> ReconnectPolicy {
        ReconnectPolicy {
            min_delay: Duration::from_millis(min_ms),
            max_delay: Duration::from_millis(max_ms),
            max_attempts,
        }
    }

    #[test]
    fn the_ceiling_doubles_from_the_minimum_up_to_the_maximum() {
        let backoff = Backoff::new(ReconnectPolicy::default());
        let ceilings: Vec<u128> = (1..=8).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]
        );
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling_whatever_the_draw() {
        let mut backoff = Backoff::new(policy(100, 1_000, None));
        for (draw, want_ms) in [(0.0, 0), (0.5, 100), (0.999, 399), (1.0, 800), (7.0, 1_000)] {
            let (attempt, delay) = backoff.next_with(draw).expect("no limit");
            let ceiling = backoff.ceiling(attempt);
            assert!(delay <= ceiling, "{delay:?} over {ceiling:?}");
            assert_eq!(delay.as_millis(), want_ms, "attempt {attempt}, draw {draw}");
        }
        assert_eq!(backoff.next_with(f64::NAN), Some((6, Duration::ZERO)));
    }

    #[test]
    fn random_delays_are_jittered_across_the_whole_range() {
        let mut delays = Vec::new();
        for _ in 0..200 {
            let mut backoff = Backoff::new(ReconnectPolicy::default());
            let (attempt, delay) = backoff.next_delay().expect("first attempt");
            assert_eq!(attempt, 1);
            assert!(delay <= Duration::from_millis(500), "{delay:?}");
            delays.push(delay);
        }
        // Full jitter: not one fixed delay, and both halves of the range are used.
        let low = delays.iter().filter(|d| d.as_millis() < 250).count();
        assert!(low > 20 && low < 180, "{low} of 200 below half the ceiling");
    }

    #[test]
    fn max_attempts_ends_the_series_and_reset_starts_a_new_one() {
        let mut backoff = Backoff::new(policy(10, 100, Some(3)));
        let attempts: Vec<u32> = std::iter::from_fn(|| backoff.next_with(1.0))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
        assert_eq!(backoff.next_with(0.5), None, "gave up after 3");
        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
        assert_eq!(
            backoff.next_with(1.0),
            Some((1, Duration::from_millis(10))),
            "back to the first, shortest delay"
        );
    }

    #[test]
    fn codes_that_mean_come_back_reconnect_and_every_other_code_is_final() {
        for code in [1001, 1005, 1006, 1011, 1012, 1013, 1014, 4000] {
            assert!(should_reconnect(code), "{code} should reconnect");
        }
        for code in [
            1000, 1002, 1003, 1007, 1008, 1009, 1010, 4001, 4002, 4003, 3000, 0,
        ] {
            assert!(!should_reconnect(code), "{code} should be final");
        }
        assert!(CloseInfo::from_frame(None).should_reconnect());
        let kicked = CloseFrame {
            code: close::KICKED.into(),
            reason: "kicked".into(),
        };
        let info = CloseInfo::from_frame(Some(&kicked));
        assert_eq!((info.code, info.reason.as_str()), (4001, "kicked"));
        assert!(!info.should_reconnect());
    }

    #[test]
    fn http_refusals_that_will_not_change_stop_the_retries() {
        let rejected = |status| ClientError::Rejected {
            status,
            code: String::new(),
            message: String::new(),
        };
        for status in [400, 401, 403, 404, 426] {
            assert!(!should_retry(&rejected(status)), "{status}");
        }
        for status in [429, 500, 502, 503] {
            assert!(should_retry(&rejected(status)), "{status}");
        }
        assert!(should_retry(&ClientError::ConnectTimeout(
            Duration::from_secs(1)
        )));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(should_retry(&tungstenite::Error::Io(refused).into()));
        assert!(!should_retry(&ClientError::InvalidToken));
    }

    #[test]
    fn every_close_code_has_a_sentence() {
        for code in [
            1000, 1001, 1002, 1005, 1006, 1008, 1009, 1011, 4000, 4001, 4002, 4999,
        ] {
            let sentence = explain_close(code);
            assert!(sentence.ends_with('.') && !sentence.contains(char::is_numeric));
        }
        assert_ne!(explain_close(4001), explain_close(4002));
    }
}
