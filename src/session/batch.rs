//! Write batching (`session.write_delay_ms`): a session may hold the room frames queued for it
//! for up to the delay and then write them together, so that a busy member's frames leave in
//! one socket write instead of one each. Sans-IO: the session arms the timer this asks for and
//! writes what `take` returns.

use std::time::Duration;

use bytes::Bytes;

/// What to do with a frame handed to the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    /// No delay is set: write it now.
    WriteNow(Bytes),
    /// Held behind the frames already held; a flush is already due.
    Held,
    /// Held, and the first: flush after this long.
    HeldFlushIn(Duration),
}

/// The frames a session holds, in the order they came. Their bytes were charged to the
/// session's outbound budget when they were queued, so what is held is bounded by it.
#[derive(Debug, Default)]
pub struct WriteBatch {
    delay: Duration,
    held: Vec<Bytes>,
}

impl WriteBatch {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            held: Vec::new(),
        }
    }

    pub fn push(&mut self, frame: Bytes) -> Push {
        if self.delay.is_zero() {
            return Push::WriteNow(frame);
        }
        self.held.push(frame);
        if self.held.len() == 1 {
            Push::HeldFlushIn(self.delay)
        } else {
            Push::Held
        }
    }

    /// Every held frame, oldest first; the next `push` arms a new flush.
    pub fn take(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn without_a_delay_every_frame_is_written_at_once() {
        let mut batch = WriteBatch::new(Duration::ZERO);
        assert_eq!(batch.push(frame(1)), Push::WriteNow(frame(1)));
        assert!(batch.take().is_empty());
    }

    #[test]
    fn the_first_held_frame_arms_one_flush_and_take_keeps_the_order() {
        let delay = Duration::from_millis(5);
        let mut batch = WriteBatch::new(delay);
        assert_eq!(batch.push(frame(1)), Push::HeldFlushIn(delay));
        assert_eq!(batch.push(frame(2)), Push::Held);
        assert_eq!(batch.push(frame(3)), Push::Held);
        assert_eq!(batch.take(), [frame(1), frame(2), frame(3)]);
        assert!(batch.take().is_empty(), "taken once");
        // After a flush the next frame arms the next one.
        assert_eq!(batch.push(frame(4)), Push::HeldFlushIn(delay));
        assert_eq!(batch.take(), [frame(4)]);
    }
}
