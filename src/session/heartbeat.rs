//! One connection's heartbeat, sans-IO: a ping every `interval`, on a fixed schedule (not
//! drifting with the timer that checks it), and the end of a client that has sent nothing at
//! all for `timeout`. The session actor asks `poll` when `next_deadline` comes.

use std::time::{Duration, Instant};

/// What is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a ping.
    Ping,
    /// The client has been silent for the whole timeout.
    TimedOut,
    /// Nothing until `next_deadline`.
    Wait,
}

#[derive(Debug)]
pub struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    last_heard: Instant,
    next_ping: Instant,
}

impl Heartbeat {
    pub fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            last_heard: now,
            next_ping: now + interval,
        }
    }

    /// The client sent something (any frame, a pong included).
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// What is due at `now`. A ping that is due moves the schedule on by one interval (or to
    /// one interval from now, if the actor woke so late that several were missed: pings are
    /// not sent in bursts).
    pub fn poll(&mut self, now: Instant) -> Beat {
        if now >= self.last_heard + self.timeout {
            return Beat::TimedOut;
        }
        if now >= self.next_ping {
            self.next_ping += self.interval;
            if self.next_ping <= now {
                self.next_ping = now + self.interval;
            }
            return Beat::Ping;
        }
        Beat::Wait
    }

    /// When `poll` may next have something to do.
    pub fn next_deadline(&self) -> Instant {
        self.next_ping.min(self.last_heard + self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the heartbeat as the actor does, waking at each deadline, for `span`; returns the
    /// times of the pings and of the timeout, if any.
    fn run(
        interval: u64,
        timeout: u64,
        span: u64,
        heard_every: Option<u64>,
    ) -> (Vec<u64>, Option<u64>) {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, ms(interval), ms(timeout));
        let mut pings = Vec::new();
        let mut now = start;
        while now <= start + ms(span) {
            let at = now.duration_since(start).as_millis() as u64;
            if let Some(every) = heard_every {
                if at.is_multiple_of(every) {
                    beat.heard(now);
                }
            }
            loop {
                match beat.poll(now) {
                    Beat::Ping => pings.push(at),
                    Beat::TimedOut => return (pings, Some(at)),
                    Beat::Wait => break,
                }
            }
            let next = beat.next_deadline();
            // The client's messages wake nothing, so a `heard` between deadlines is seen at the next one.
            now = match heard_every {
                Some(every) => next.min(start + ms((at / every + 1) * every)),
                None => next,
            };
        }
        (pings, None)
    }

    #[test]
    fn pings_keep_the_interval_whatever_the_timeout() {
        // Issue 12: with 1000/2500 pings came every 1.25 s, with 5000/15000 at 7.5 s and 15 s.
        let (pings, end) = run(1000, 2500, 5000, Some(100));
        assert_eq!(pings, vec![1000, 2000, 3000, 4000, 5000]);
        assert_eq!(end, None);
        let (pings, _) = run(5000, 15000, 20000, Some(1000));
        assert_eq!(pings, vec![5000, 10000, 15000, 20000]);
    }

    #[test]
    fn a_silent_client_times_out_after_the_timeout() {
        let (pings, end) = run(1000, 2500, 10000, None);
        assert_eq!(pings, vec![1000, 2000]);
        assert_eq!(end, Some(2500));
    }

    #[test]
    fn a_late_wake_sends_one_ping_not_a_burst() {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, ms(100), ms(10_000));
        let late = start + ms(550);
        assert_eq!(beat.poll(late), Beat::Ping);
        assert_eq!(beat.poll(late), Beat::Wait);
        assert_eq!(beat.next_deadline(), late + ms(100));
    }
}
