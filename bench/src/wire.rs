//! The two wire protocols the load generator speaks: Parlor's (Parlor itself and the raw
//! floor) and Engine.IO v4 / Socket.IO v5 with the MessagePack parser. Each connects, joins a
//! room with an acknowledgement, builds emit frames, and finds the payload in a delivery
//! without allocating.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parlor_protocol::{encode_client, ClientFrame, Value};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which protocol a target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// Parlor protocol v1 (Parlor, and the raw floor which speaks the same wire format).
    Parlor,
    /// Engine.IO v4 over the websocket transport, Socket.IO v5 packets, MessagePack parser.
    SocketIo,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the server closed the connection during {0}")]
    Closed(&'static str),
    #[error("unexpected answer during {0}")]
    Unexpected(&'static str),
}

impl From<tokio_tungstenite::tungstenite::Error> for WireError {
    fn from(err: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(err))
    }
}

/// The Socket.IO packet types used here (socket.io-protocol v5).
const SIO_CONNECT: u8 = 0;
const SIO_EVENT: u8 = 2;
const SIO_ACK: u8 = 3;

impl Proto {
    /// The WebSocket URL for a server at `base` (`host:port`).
    pub fn url(self, base: &str) -> String {
        match self {
            Self::Parlor => format!("ws://{base}/ws"),
            Self::SocketIo => format!("ws://{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    /// Connects and completes the protocol's own handshake.
    pub async fn connect(self, base: &str) -> Result<Ws, WireError> {
        let config = Some(parlor_client::websocket_config());
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(self.url(base), config, true).await?;
        match self {
            // The first frame is `welcome`.
            Self::Parlor => {
                next_binary(&mut ws, "welcome").await?;
            }
            // Engine.IO `open` (text "0{...}"), then a Socket.IO CONNECT to "/" and its answer.
            Self::SocketIo => {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.starts_with('0') => break,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(WireError::Closed("engine.io open")),
                    }
                }
                ws.send(Message::Binary(sio_packet(SIO_CONNECT, None, None)))
                    .await?;
                let answer = next_binary(&mut ws, "socket.io connect").await?;
                if sio_type(&answer) != Some(SIO_CONNECT) {
                    return Err(WireError::Unexpected("socket.io connect"));
                }
            }
        }
        Ok(ws)
    }

    /// Joins `room` and waits for the acknowledgement, skipping anything else.
    pub async fn join(self, ws: &mut Ws, room: &str) -> Result<(), WireError> {
        const ACK_ID: u64 = 1;
        let frame = match self {
            Self::Parlor => encode_client(&ClientFrame::Join {
                reference: Some(ACK_ID),
                room: room.into(),
                password: None,
                create: true,
            }),
            Self::SocketIo => sio_packet(
                SIO_EVENT,
                Some(ACK_ID),
                Some(vec![Value::from("join"), Value::from(room)]),
            ),
        };
        ws.send(Message::Binary(frame)).await?;
        loop {
            let bytes = next_binary(ws, "join").await?;
            let acked = match self {
                Self::Parlor => matches!(
                    peek_parlor(&bytes),
                    Some(Peek {
                        kind: "ok",
                        reference: Some(ACK_ID),
                        ..
                    })
                ),
                Self::SocketIo => matches!(
                    peek_sio(&bytes),
                    Some(SioPeek {
                        kind: SIO_ACK,
                        id: Some(ACK_ID),
                        ..
                    })
                ),
            };
            if acked {
                return Ok(());
            }
        }
    }

    /// An emit of `payload` (as MessagePack binary) to `room`; with `echo` the sender gets it too.
    pub fn emit(self, room: &str, payload: Vec<u8>, echo: bool) -> Bytes {
        match self {
            Self::Parlor => encode_client(&ClientFrame::Emit {
                reference: None,
                room: room.into(),
                event: "s".into(),
                data: Value::Binary(payload),
                echo,
            }),
            Self::SocketIo => {
                let event = if echo { "emit_all" } else { "emit" };
                sio_packet(
                    SIO_EVENT,
                    None,
                    Some(vec![
                        Value::from(event),
                        Value::from(room),
                        Value::Binary(payload),
                    ]),
                )
            }
        }
    }

    /// The answer a protocol-level text message needs, if any: Engine.IO pings ("2") want a
    /// pong ("3").
    pub fn answer_text(self, text: &str) -> Option<Message> {
        (self == Self::SocketIo && text == "2").then(|| Message::text("3"))
    }

    /// The payload of a delivered event, or `None` for any other frame.
    pub fn delivery(self, frame: &[u8]) -> Option<&[u8]> {
        match self {
            Self::Parlor => match peek_parlor(frame)? {
                Peek {
                    kind: "event",
                    data: Some(data),
                    ..
                } => Some(data),
                _ => None,
            },
            Self::SocketIo => match peek_sio(frame)? {
                SioPeek {
                    kind: SIO_EVENT,
                    data: Some((_, _, _, data)),
                    ..
                } => Some(data),
                _ => None,
            },
        }
    }
}

async fn next_binary(ws: &mut Ws, during: &'static str) -> Result<Bytes, WireError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
            Some(Ok(Message::Close(_))) | None => return Err(WireError::Closed(during)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// The fields of a Parlor server frame the generator looks at, borrowed from the frame.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(rename = "ref", default)]
    reference: Option<u64>,
    #[serde(default, borrow)]
    data: Option<&'a [u8]>,
}

fn peek_parlor(frame: &[u8]) -> Option<Peek<'_>> {
    rmp_serde::from_slice(frame).ok()
}

/// A Socket.IO packet as the generator reads it: type, ack id, and for events
/// `["e", room, sender, payload]`.
#[derive(Deserialize)]
struct SioPeek<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, borrow)]
    data: Option<(&'a str, &'a str, &'a str, &'a [u8])>,
}

fn peek_sio(frame: &[u8]) -> Option<SioPeek<'_>> {
    // Events are the only packets with a 4-element data array; others fail that shape, so
    // read them again without it.
    rmp_serde::from_slice::<SioPeek>(frame).ok().or_else(|| {
        #[derive(Deserialize)]
        struct Bare {
            #[serde(rename = "type")]
            kind: u8,
            #[serde(default)]
            id: Option<u64>,
        }
        let bare: Bare = rmp_serde::from_slice(frame).ok()?;
        Some(SioPeek {
            kind: bare.kind,
            id: bare.id,
            data: None,
        })
    })
}

fn sio_type(frame: &[u8]) -> Option<u8> {
    peek_sio(frame).map(|p| p.kind)
}

/// A Socket.IO packet for namespace "/", encoded as the msgpack parser does: a map with
/// `type`, `nsp`, and optionally `id` and `data`.
fn sio_packet(kind: u8, id: Option<u64>, data: Option<Vec<Value>>) -> Bytes {
    let mut map = vec![
        (Value::from("type"), Value::from(kind)),
        (Value::from("nsp"), Value::from("/")),
    ];
    if let Some(id) = id {
        map.push((Value::from("id"), Value::from(id)));
    }
    if let Some(data) = data {
        map.push((Value::from("data"), Value::Array(data)));
    }
    let mut out = Vec::with_capacity(96);
    // Writing a Value into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &Value::Map(map));
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_protocol::{encode_server, EventFrame, ServerFrame, SessionId};

    #[test]
    fn finds_the_payload_of_a_parlor_event_and_nothing_else() {
        let event = encode_server(&ServerFrame::Event(EventFrame {
            room: "r".into(),
            from: SessionId::new_random(),
            event: "s".into(),
            data: Value::Binary(vec![1, 2, 3]),
            offset: 9,
        }));
        assert_eq!(Proto::Parlor.delivery(&event), Some(&[1u8, 2, 3][..]));
        assert_eq!(
            Proto::Parlor.delivery(&encode_server(&ServerFrame::Ok {
                reference: 1,
                data: None,
            })),
            None
        );
        assert!(matches!(
            peek_parlor(&encode_server(&ServerFrame::Ok {
                reference: 1,
                data: None,
            })),
            Some(Peek {
                kind: "ok",
                reference: Some(1),
                ..
            })
        ));
    }

    #[test]
    fn finds_the_payload_of_a_socketio_event_and_reads_acks() {
        let event = sio_packet(
            SIO_EVENT,
            None,
            Some(vec![
                Value::from("e"),
                Value::from("r"),
                Value::from("sid"),
                Value::Binary(vec![7; 4]),
            ]),
        );
        assert_eq!(Proto::SocketIo.delivery(&event), Some(&[7u8; 4][..]));
        let ack = sio_packet(SIO_ACK, Some(1), Some(vec![]));
        assert!(matches!(
            peek_sio(&ack),
            Some(SioPeek {
                kind: SIO_ACK,
                id: Some(1),
                data: None
            })
        ));
        assert_eq!(Proto::SocketIo.delivery(&ack), None);
    }
}
