//! The outbound side of a session: a byte budget shared by the registry (which charges it when
//! it queues a frame) and the response body (which credits it when the HTTP layer takes the
//! bytes for the socket). Everything queued between the two (the session's actix mailbox and
//! its `WebsocketContext`) is therefore bounded by the budget, which neither actix's `do_send`
//! nor `WebsocketContext` bounds on its own.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix::Recipient;
use bytes::Bytes;
use futures_util::Stream;
use pin_project_lite::pin_project;
use tokio::sync::mpsc;

use crate::registry::{Close, Outlet, Overflow};

/// What the registry sends a session through its actor mailbox (frames take the outlet's
/// channel instead; see `SessionOutlet`).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub enum Outbound {
    /// Close the connection, and why.
    Close(Close),
}

/// The longest header of an unmasked (server-sent) WebSocket frame.
pub const MAX_HEADER_BYTES: usize = 10;

/// Bytes a frame with this payload length occupies once encoded by the server (unmasked), as
/// RFC 6455 section 5.2 lays them out.
pub fn encoded_len(payload_len: usize) -> usize {
    let header = match payload_len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => MAX_HEADER_BYTES,
    };
    header + payload_len
}

/// A session's outbound byte budget.
#[derive(Debug)]
pub struct OutboundBudget {
    pending: AtomicUsize,
    limit: usize,
}

impl OutboundBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            pending: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Charges `bytes` if they fit in the budget.
    fn try_charge(&self, bytes: usize) -> bool {
        let before = self.pending.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.limit {
            self.pending.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Charges `bytes` unconditionally: the session's own small replies (errors, pongs, pings,
    /// close) are produced only as fast as it reads, so they cannot run away.
    pub fn charge(&self, bytes: usize) {
        self.pending.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn credit(&self, bytes: usize) {
        // Saturating, so that a mistake in accounting can never wrap around to "huge".
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(bytes))
            });
    }
}

/// The registry's handle on one session: a channel of encoded frames guarded by the session's
/// budget, and the actor's mailbox for the rare control message.
///
/// Frames do not go through the actix mailbox: `do_send` boxes every message, and with one box
/// per recipient allocated on the registry's thread and freed on a worker's, malloc was a fifth
/// of the server's CPU at saturation. tokio's channel allocates one block per 32 frames.
///
/// A close for shutdown takes the frame channel too, behind the frames already queued, so that
/// they are written before the close frame (the shutdown's flush). Evictions take the mailbox:
/// they must not wait behind frames a slow consumer is not reading.
#[derive(Clone)]
pub struct SessionOutlet {
    frames: mpsc::UnboundedSender<Outgoing>,
    control: Recipient<Outbound>,
    budget: Arc<OutboundBudget>,
}

impl SessionOutlet {
    pub fn new(
        frames: mpsc::UnboundedSender<Outgoing>,
        control: Recipient<Outbound>,
        budget: Arc<OutboundBudget>,
    ) -> Self {
        Self {
            frames,
            control,
            budget,
        }
    }
}

impl Outlet for SessionOutlet {
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow> {
        let cost = encoded_len(frame.len());
        if !self.budget.try_charge(cost) {
            return Err(Overflow);
        }
        // Unbounded on purpose: the budget already bounds the bytes. A closed channel means
        // the session has ended and its disconnect is on its way to the registry.
        if self.frames.send(Outgoing::Frame(frame)).is_err() {
            self.budget.credit(cost);
        }
        Ok(())
    }

    fn close(&self, why: Close) {
        match why {
            Close::ShuttingDown => {
                // A closed channel: the session has ended already.
                let _ = self.frames.send(Outgoing::Close(why));
            }
            _ => self.control.do_send(Outbound::Close(why)),
        }
    }
}

/// What the frame channel carries: a frame already charged to the budget, or a close that must
/// come after the frames before it.
pub enum Outgoing {
    Frame(Bytes),
    Close(Close),
}

/// Holds one of the node's `max_connections` slots until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    live: Arc<AtomicUsize>,
}

impl ConnectionSlot {
    /// Takes a slot if fewer than `max` are taken.
    pub fn try_acquire(live: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self {
            live: Arc::clone(live),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// The WebSocket response body: credits the session's budget with every chunk the HTTP
    /// layer takes, and holds the connection's slot for as long as the connection lives.
    pub struct CountedBody<S> {
        #[pin]
        inner: S,
        budget: Arc<OutboundBudget>,
        slot: ConnectionSlot,
    }
}

impl<S> CountedBody<S> {
    pub fn new(inner: S, budget: Arc<OutboundBudget>, slot: ConnectionSlot) -> Self {
        Self {
            inner,
            budget,
            slot,
        }
    }
}

impl<S, E> Stream for CountedBody<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let polled = this.inner.poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            this.budget.credit(chunk.len());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_follows_rfc_6455_header_sizes() {
        assert_eq!(encoded_len(0), 2);
        assert_eq!(encoded_len(125), 127);
        assert_eq!(encoded_len(126), 130);
        assert_eq!(encoded_len(65_535), 65_539);
        assert_eq!(encoded_len(65_536), 65_546);
    }

    #[test]
    fn budget_refuses_what_does_not_fit_and_recovers_on_credit() {
        let budget = OutboundBudget::new(100);
        assert!(budget.try_charge(60));
        assert!(!budget.try_charge(41));
        assert!(budget.try_charge(40));
        assert_eq!(budget.pending(), 100);
        budget.credit(70);
        assert!(budget.try_charge(70));
        budget.credit(1_000);
        assert_eq!(budget.pending(), 0);
    }

    #[test]
    fn connection_slots_stop_at_the_cap_and_free_on_drop() {
        let live = Arc::new(AtomicUsize::new(0));
        let a = ConnectionSlot::try_acquire(&live, 2).unwrap();
        let _b = ConnectionSlot::try_acquire(&live, 2).unwrap();
        assert!(ConnectionSlot::try_acquire(&live, 2).is_none());
        drop(a);
        assert!(ConnectionSlot::try_acquire(&live, 2).is_some());
    }
}
