//! The y-websocket dialect (`/yjs/{document}`): a connection whose every binary message is a
//! y-sync or awareness message of one document, both ways, as the `y-websocket` provider
//! speaks it. The session makes it a member of the document's room (a `yjs` room, made if
//! missing: `Create`, then `Join` if it exists) and turns each message into an `emit` of event
//! `y` (`crate::document`); of what the room sends it, only the `y` messages go on the wire,
//! as their bare bytes. Sans-IO: `YWebsocket` decides, the session writes.

use bytes::Bytes;
use parlor_protocol::{decode_server, ClientFrame, ErrorCode, RoomOptions, ServerFrame, Value};

use crate::document::{EVENT, TYPE};

/// The `ref` of the session's own `create` and `join`; the document's messages count from
/// `FIRST_MESSAGE_REF`.
const CREATE_REF: u64 = 1;
const JOIN_REF: u64 = 2;
const FIRST_MESSAGE_REF: u64 = 16;

/// What to do with a frame the registry sent a y-websocket connection.
#[derive(Debug, PartialEq)]
pub enum Outbound {
    /// Write each of these as one binary message, in order.
    Write(Vec<Bytes>),
    /// Ask to join (the document's room exists already).
    Join(ClientFrame),
    /// Close: the connection cannot be (or is no longer) a member of the document's room.
    Close(String),
    /// The connection is in the document's room now: these messages, held until then, go.
    Release(Vec<ClientFrame>),
    /// Nothing goes on the wire.
    Drop,
}

/// Messages a connection may send before it is in its document's room (y-websocket sends its
/// step 1 and awareness at once); past it, the connection is closed.
const MAX_HELD: usize = 64;

/// One y-websocket connection's view of its document room.
#[derive(Debug)]
pub struct YWebsocket {
    room: String,
    next_ref: u64,
    /// Messages that came before the connection was in the room, in order (`None` once in).
    held: Option<Vec<ClientFrame>>,
}

impl YWebsocket {
    pub fn new(room: String) -> Self {
        Self {
            room,
            next_ref: FIRST_MESSAGE_REF,
            held: Some(Vec::new()),
        }
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    /// The first request: make the document's room (or hear that it exists).
    pub fn create(&self) -> ClientFrame {
        ClientFrame::Create {
            reference: Some(CREATE_REF),
            room: Some(self.room.clone()),
            options: RoomOptions {
                room_type: Some(TYPE.to_owned()),
                ..RoomOptions::default()
            },
        }
    }

    /// A message the client sent: an `emit` of it to the document, now (`Ok(Some)`) or once
    /// the connection is in the room (`Ok(None)`); `Err` when too many wait for that.
    pub fn inbound(&mut self, bytes: &[u8]) -> Result<Option<ClientFrame>, String> {
        let reference = self.next_ref;
        self.next_ref += 1;
        let frame = ClientFrame::Emit {
            reference: Some(reference),
            room: self.room.clone(),
            event: EVENT.to_owned(),
            data: Value::Binary(bytes.to_vec()),
            echo: false,
        };
        match &mut self.held {
            None => Ok(Some(frame)),
            Some(held) if held.len() < MAX_HELD => {
                held.push(frame);
                Ok(None)
            }
            Some(_) => Err(format!(
                "more than {MAX_HELD} messages before the document was open"
            )),
        }
    }

    /// What becomes of an encoded frame the registry sent.
    pub fn outbound(&mut self, frame: &[u8]) -> Outbound {
        let Ok(frame) = decode_server(frame, 16) else {
            return Outbound::Drop;
        };
        match frame {
            ServerFrame::Joined(j) if j.room == self.room => {
                Outbound::Release(self.held.take().unwrap_or_default())
            }
            ServerFrame::Event(e) if e.room == self.room && e.event == EVENT => bytes_of(e.data),
            // The room's answer to one of this connection's messages (a step 1): messages.
            ServerFrame::Ok {
                reference,
                data: Some(data),
            } if reference >= FIRST_MESSAGE_REF => bytes_of(data),
            ServerFrame::Error(e) if e.reference == Some(CREATE_REF) => {
                if e.code == ErrorCode::RoomExists {
                    Outbound::Join(ClientFrame::Join {
                        reference: Some(JOIN_REF),
                        room: self.room.clone(),
                        password: None,
                        create: false,
                    })
                } else {
                    Outbound::Close(format!("cannot open the document: {}", e.message))
                }
            }
            ServerFrame::Error(e) if e.reference == Some(JOIN_REF) => {
                Outbound::Close(format!("cannot join the document: {}", e.message))
            }
            ServerFrame::Left { room, reason } if room == self.room => {
                Outbound::Close(format!("left the document ({reason:?})"))
            }
            ServerFrame::Error(e) => {
                // A refused message (a bad update) has no answer in y-websocket.
                tracing::debug!(room = %self.room, code = ?e.code, "y-websocket message refused: {}", e.message);
                Outbound::Drop
            }
            // Presence, joined, ok: not y-websocket's.
            _ => Outbound::Drop,
        }
    }
}

/// The y-websocket messages in `data`: one (bytes), or several (an array of bytes).
fn bytes_of(data: Value) -> Outbound {
    let messages: Vec<Bytes> = match data {
        Value::Binary(bytes) => vec![Bytes::from(bytes)],
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Binary(bytes) => Some(Bytes::from(bytes)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if messages.is_empty() {
        Outbound::Drop
    } else {
        Outbound::Write(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_protocol::{encode_server, ErrorFrame, EventFrame, SessionId};

    fn error(reference: u64, code: ErrorCode) -> Bytes {
        encode_server(&ServerFrame::Error(ErrorFrame {
            reference: Some(reference),
            code,
            message: "no".into(),
            reason: None,
        }))
    }

    #[test]
    fn only_the_documents_messages_reach_the_wire_as_bare_bytes() {
        let mut y = YWebsocket::new("notes".into());
        let held: Vec<_> = (0..64).map(|_| y.inbound(&[0])).collect();
        assert!(held.iter().all(|h| *h == Ok(None)));
        assert!(y.inbound(&[0]).is_err(), "bounded");
        let mut y = YWebsocket::new("notes".into());
        assert!(matches!(
            y.create(),
            ClientFrame::Create {
                reference: Some(1),
                ..
            }
        ));
        let event = encode_server(&ServerFrame::Event(EventFrame {
            room: "notes".into(),
            from: SessionId::NIL,
            event: "y".into(),
            data: Value::Binary(vec![0, 2, 1]),
            offset: 4,
        }));
        assert_eq!(
            y.outbound(&event),
            Outbound::Write(vec![Bytes::from_static(&[0, 2, 1])])
        );
        let other_room = encode_server(&ServerFrame::Event(EventFrame {
            room: "chat".into(),
            from: SessionId::NIL,
            event: "y".into(),
            data: Value::Binary(vec![1]),
            offset: 0,
        }));
        assert_eq!(y.outbound(&other_room), Outbound::Drop);
        // The answer to one of its messages (a step 1) is messages; others' answers are not.
        let answer = encode_server(&ServerFrame::Ok {
            reference: 16,
            data: Some(Value::Array(vec![
                Value::Binary(vec![0, 1, 0]),
                Value::Binary(vec![0, 0, 0]),
            ])),
        });
        assert_eq!(
            y.outbound(&answer),
            Outbound::Write(vec![
                Bytes::from_static(&[0, 1, 0]),
                Bytes::from_static(&[0, 0, 0])
            ])
        );
        let own = encode_server(&ServerFrame::Ok {
            reference: 1,
            data: Some(Value::Binary(vec![0])),
        });
        assert_eq!(y.outbound(&own), Outbound::Drop);
        assert!(matches!(
            y.outbound(&error(1, ErrorCode::RoomExists)),
            Outbound::Join(_)
        ));
        assert!(matches!(
            y.outbound(&error(1, ErrorCode::Forbidden)),
            Outbound::Close(_)
        ));
        assert!(matches!(
            y.outbound(&error(2, ErrorCode::RoomFull)),
            Outbound::Close(_)
        ));
        assert_eq!(
            y.outbound(&error(16, ErrorCode::RoomRefused)),
            Outbound::Drop
        );
        // Held until the connection is in the room, then released in order.
        assert_eq!(y.inbound(&[0, 0, 1, 0]), Ok(None));
        let joined = encode_server(&ServerFrame::Joined(parlor_protocol::JoinedFrame {
            reference: Some(1),
            room: "notes".into(),
            members: Vec::new(),
            owner: None,
            max_members: 8,
            locked: false,
            locked_by_owner: false,
            private: false,
            metadata: Default::default(),
            state: Default::default(),
            version: 0,
            epoch: "e".into(),
            offset: 0,
            users: Default::default(),
            away: Vec::new(),
            room_type: Some("yjs".into()),
        }));
        let Outbound::Release(held) = y.outbound(&joined) else {
            panic!("released")
        };
        assert_eq!(held.len(), 1);
        assert!(matches!(y.inbound(&[0, 0, 1, 1]), Ok(Some(_))));
        match held.into_iter().next().unwrap() {
            ClientFrame::Emit {
                reference,
                room,
                event,
                data,
                ..
            } => {
                assert_eq!((reference, &room[..], &event[..]), (Some(16), "notes", "y"));
                assert_eq!(data, Value::Binary(vec![0, 0, 1, 0]));
            }
            other => panic!("{other:?}"),
        }
    }
}
