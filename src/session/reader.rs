//! Reading a client's WebSocket messages from the bytes that follow the upgrade (RFC 6455),
//! bounded by the largest message the server accepts.
//!
//! `MessageReader` is sans-IO: it is fed bytes and hands out whole messages (fragments
//! reassembled) or the first framing error. It holds at most one frame beside the fragments
//! before it, and never more than the limit plus `MAX_BUFFERED_OVER_LIMIT` (a control frame
//! may come between fragments): it asks for exactly the bytes it still needs, and a header
//! that declares a payload over the limit is an error as soon as the header is read, before
//! any of that payload is buffered.
//! `SocketReader` drives it from the HTTP payload stream, and holds each binary message until
//! the registry's request queue has room for it: until then the socket is not read, so TCP
//! slows the sender down instead of the server buffering or dropping its requests.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::ws::{CloseReason, Parser};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use parlor_protocol::close;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::PollSemaphore;

use crate::engine::RequestGate;

/// The longest header of a client frame: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_CLIENT_HEADER_BYTES: usize = 14;
/// Longest payload of a control frame (ping, pong, close), RFC 6455 section 5.5.
const MAX_CONTROL_PAYLOAD: usize = 125;
/// The most a reader holds beyond its message limit: a control frame whole (header and
/// payload), which may arrive between the fragments of a message already at the limit.
pub const MAX_BUFFERED_OVER_LIMIT: usize = MAX_CLIENT_HEADER_BYTES + MAX_CONTROL_PAYLOAD;

/// One whole message from the client.
#[derive(Debug, PartialEq)]
pub enum Message {
    Binary(Bytes),
    /// A text message (valid UTF-8) of this many bytes; the protocol refuses text, so its
    /// content is not kept.
    Text(usize),
    Ping(Bytes),
    Pong,
    Close(Option<CloseReason>),
}

/// Why the client's input cannot be read any further. Each closes the connection with the
/// close code RFC 6455 gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("message over {max} bytes")]
    TooBig { max: usize },
    #[error("{0}")]
    Protocol(&'static str),
    #[error("close code {0} is not one a client may send")]
    CloseCode(u16),
    #[error("a text message or close reason is not valid UTF-8")]
    InvalidUtf8,
}

impl ReadError {
    /// The close code that tells the client why.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooBig { .. } => close::MESSAGE_TOO_BIG,
            Self::Protocol(_) | Self::CloseCode(_) => close::PROTOCOL_ERROR,
            Self::InvalidUtf8 => close::INVALID_PAYLOAD,
        }
    }
}

/// A frame's header, as far as it has arrived.
struct Header {
    fin: bool,
    opcode: u8,
    /// Bytes of the header, mask included.
    len: usize,
    payload: usize,
}

/// The message being reassembled from fragments: text or not, and its bytes so far.
struct Partial {
    text: bool,
    bytes: BytesMut,
}

/// See the module docs.
pub struct MessageReader {
    max_bytes: usize,
    /// The start of the current frame: never more than one frame.
    buf: BytesMut,
    partial: Option<Partial>,
    failed: bool,
}

impl MessageReader {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            buf: BytesMut::new(),
            partial: None,
            failed: false,
        }
    }

    /// Bytes the reader needs before it can tell more; 0 after an error, when it wants none.
    pub fn wants(&self) -> usize {
        if self.failed {
            return 0;
        }
        let needed = match self.header() {
            Ok(Some(header)) => header.len + header.payload,
            Ok(None) => self.header_len().unwrap_or(2),
            Err(_) => return 0,
        };
        needed.saturating_sub(self.buf.len()).max(1)
    }

    /// Bytes buffered and not yet handed out as a message (a frame part, and fragments).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |p| p.bytes.len())
    }

    /// Takes in bytes; the caller gives at most `wants()` at a time.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until its bytes are in, or the error that ends reading.
    /// After an error the reader stays failed.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        if self.failed {
            return Ok(None);
        }
        let result = self.read();
        if result.is_err() {
            self.failed = true;
            self.buf = BytesMut::new();
            self.partial = None;
        }
        result
    }

    fn read(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            let Some(header) = self.header()? else {
                return Ok(None);
            };
            let frame_len = header.len + header.payload;
            if self.buf.len() < frame_len {
                return Ok(None);
            }
            let mut frame = self.buf.split_to(frame_len);
            // Parser checks the frame again and unmasks it; every way it can fail was checked
            // above, but its answer is the one that counts.
            // (Its own size check must not refuse a control frame our limits allow.)
            let limit = self.max_bytes.max(MAX_CONTROL_PAYLOAD);
            let payload = match Parser::parse(&mut frame, true, limit) {
                Ok(Some((_, _, payload))) => payload.map_or_else(Bytes::new, BytesMut::freeze),
                _ => return Err(ReadError::Protocol("malformed frame")),
            };
            if let Some(message) = self.take(header.fin, header.opcode, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// The header length the first two bytes announce.
    fn header_len(&self) -> Option<usize> {
        let second = *self.buf.get(1)?;
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Some(2 + extended + 4)
    }

    /// The current frame's header once it has all arrived, checked against the limits. Its
    /// first two bytes are checked as soon as they arrive.
    fn header(&self) -> Result<Option<Header>, ReadError> {
        let (Some(&first), Some(&second)) = (self.buf.first(), self.buf.get(1)) else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(ReadError::Protocol(
                "reserved bits set without an extension",
            ));
        }
        if second & 0x80 == 0 {
            return Err(ReadError::Protocol("client frames must be masked"));
        }
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        let control = match opcode {
            0x8..=0xa => true,
            0x0..=0x2 => false,
            _ => return Err(ReadError::Protocol("unknown opcode")),
        };
        if control && !fin {
            return Err(ReadError::Protocol("control frames must not be fragmented"));
        }
        let Some(len) = self.header_len() else {
            return Ok(None);
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        let payload = match second & 0x7f {
            126 => usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.buf[2..10]);
                // Anything past usize is over the limit anyway.
                usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX)
            }
            n => usize::from(n),
        };
        if control && payload > MAX_CONTROL_PAYLOAD {
            return Err(ReadError::Protocol("control frame payload over 125 bytes"));
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.bytes.len());
        if !control && payload.saturating_add(so_far) > self.max_bytes {
            return Err(ReadError::TooBig {
                max: self.max_bytes,
            });
        }
        Ok(Some(Header {
            fin,
            opcode,
            len,
            payload,
        }))
    }

    /// Takes one whole frame's payload: a message, or `None` while fragments are pending.
    fn take(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: Bytes,
    ) -> Result<Option<Message>, ReadError> {
        match opcode {
            0x9 => Ok(Some(Message::Ping(payload))),
            0xa => Ok(Some(Message::Pong)),
            0x8 => close_reason(&payload).map(|reason| Some(Message::Close(reason))),
            0x1 | 0x2 if self.partial.is_some() => Err(ReadError::Protocol(
                "a new message started before the fragmented one finished",
            )),
            0x1 | 0x2 if fin => whole(opcode == 0x1, payload).map(Some),
            0x1 | 0x2 => {
                self.partial = Some(Partial {
                    text: opcode == 0x1,
                    bytes: BytesMut::from(&payload[..]),
                });
                Ok(None)
            }
            _ => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ReadError::Protocol("a continuation frame without a start"));
                };
                partial.bytes.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let partial = self.partial.take().map(|p| (p.text, p.bytes.freeze()));
                match partial {
                    Some((text, bytes)) => whole(text, bytes).map(Some),
                    None => Ok(None),
                }
            }
        }
    }
}

/// A whole data message.
fn whole(text: bool, payload: Bytes) -> Result<Message, ReadError> {
    if !text {
        return Ok(Message::Binary(payload));
    }
    std::str::from_utf8(&payload).map_err(|_| ReadError::InvalidUtf8)?;
    Ok(Message::Text(payload.len()))
}

/// The code and reason of a close frame, checked as RFC 6455 section 7.4 asks.
fn close_reason(payload: &[u8]) -> Result<Option<CloseReason>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("a close frame's code is two bytes")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(ReadError::CloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
            Ok(Some(CloseReason {
                code: code.into(),
                description: (!reason.is_empty()).then(|| reason.to_owned()),
            }))
        }
    }
}

/// What the socket gave, for the session actor.
#[derive(Debug)]
pub enum Input {
    /// A message; a binary one comes with its place in the registry's request queue.
    Message(Message, Option<OwnedSemaphorePermit>),
    /// The client broke the framing; nothing more is read from it (what it sends is drained).
    Failed(ReadError),
}

/// See the module docs.
pub struct SocketReader<S> {
    payload: S,
    /// What arrived from the socket and the reader has not asked for yet.
    pending: Bytes,
    reader: MessageReader,
    gate: PollSemaphore,
    /// A binary message waiting for its place in the request queue.
    held: Option<Bytes>,
    failed: bool,
}

impl<S> SocketReader<S> {
    pub fn new(payload: S, max_bytes: usize, gate: &RequestGate) -> Self {
        Self {
            payload,
            pending: Bytes::new(),
            reader: MessageReader::new(max_bytes),
            gate: PollSemaphore::new(gate.semaphore()),
            held: None,
            failed: false,
        }
    }
}

impl<S, E> Stream for SocketReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Input;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Input>> {
        let this = &mut *self;
        loop {
            if let Some(message) = this.held.take() {
                let cost = RequestGate::cost(message.len());
                match this.gate.poll_acquire_many(cx, cost) {
                    Poll::Ready(permit) => {
                        return Poll::Ready(Some(Input::Message(Message::Binary(message), permit)))
                    }
                    Poll::Pending => {
                        this.held = Some(message);
                        return Poll::Pending;
                    }
                }
            }
            if !this.failed {
                match this.reader.next_message() {
                    Ok(Some(Message::Binary(message))) => {
                        this.held = Some(message);
                        continue;
                    }
                    Ok(Some(message)) => return Poll::Ready(Some(Input::Message(message, None))),
                    Ok(None) => {}
                    Err(err) => {
                        this.failed = true;
                        this.pending = Bytes::new();
                        return Poll::Ready(Some(Input::Failed(err)));
                    }
                }
                if !this.pending.is_empty() {
                    let n = this.reader.wants().min(this.pending.len());
                    this.reader.feed(&this.pending[..n]);
                    this.pending.advance(n);
                    continue;
                }
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    // After a framing error, input is read only to be dropped, so that the
                    // client's unread bytes cannot turn the close into a reset.
                    if !this.failed {
                        this.pending = chunk;
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    tracing::debug!(%err, "connection input failed");
                    return Poll::Ready(None);
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests;
