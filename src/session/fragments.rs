//! Reassembly of fragmented WebSocket messages (RFC 6455 section 5.4), bounded by the maximum
//! message size: `actix-web-actors` hands continuation frames to the actor one by one.

use actix_http::ws::Item;
use bytes::{Bytes, BytesMut};

/// What one continuation frame completed.
#[derive(Debug, PartialEq)]
pub enum Reassembled {
    /// More fragments are expected.
    Pending,
    /// A whole binary message.
    Binary(Bytes),
    /// A whole text message (refused by the protocol; its bytes are not kept).
    Text,
    /// The message grew past the maximum size.
    TooBig,
    /// A continuation without a start, or a new start before the last one finished.
    OutOfOrder,
}

pub struct Fragments {
    max_bytes: usize,
    /// The message being reassembled: whether it is text, and its bytes so far.
    current: Option<(bool, BytesMut)>,
}

impl Fragments {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            current: None,
        }
    }

    pub fn push(&mut self, item: Item) -> Reassembled {
        let (chunk, last) = match item {
            Item::FirstText(_) | Item::FirstBinary(_) if self.current.is_some() => {
                self.current = None;
                return Reassembled::OutOfOrder;
            }
            Item::FirstText(chunk) => {
                self.current = Some((true, BytesMut::new()));
                (chunk, false)
            }
            Item::FirstBinary(chunk) => {
                self.current = Some((false, BytesMut::new()));
                (chunk, false)
            }
            Item::Continue(chunk) => (chunk, false),
            Item::Last(chunk) => (chunk, true),
        };
        let Some((is_text, buffer)) = self.current.as_mut() else {
            return Reassembled::OutOfOrder;
        };
        if buffer.len() + chunk.len() > self.max_bytes {
            self.current = None;
            return Reassembled::TooBig;
        }
        buffer.extend_from_slice(&chunk);
        if !last {
            return Reassembled::Pending;
        }
        let is_text = *is_text;
        match self.current.take() {
            Some((_, buffer)) if !is_text => Reassembled::Binary(buffer.freeze()),
            _ => Reassembled::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn reassembles_binary_up_to_the_bound() {
        let mut f = Fragments::new(6);
        assert_eq!(f.push(Item::FirstBinary(b("ab"))), Reassembled::Pending);
        assert_eq!(f.push(Item::Continue(b("cd"))), Reassembled::Pending);
        assert_eq!(
            f.push(Item::Last(b("ef"))),
            Reassembled::Binary(b("abcdef"))
        );
        assert_eq!(f.push(Item::FirstBinary(b("abcd"))), Reassembled::Pending);
        assert_eq!(f.push(Item::Last(b("efg"))), Reassembled::TooBig);
    }

    #[test]
    fn refuses_text_and_out_of_order_fragments() {
        let mut f = Fragments::new(100);
        assert_eq!(f.push(Item::FirstText(b("a"))), Reassembled::Pending);
        assert_eq!(f.push(Item::Last(b("b"))), Reassembled::Text);
        assert_eq!(f.push(Item::Continue(b("x"))), Reassembled::OutOfOrder);
        assert_eq!(f.push(Item::FirstBinary(b("a"))), Reassembled::Pending);
        assert_eq!(f.push(Item::FirstBinary(b("a"))), Reassembled::OutOfOrder);
    }
}
