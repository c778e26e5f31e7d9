//! `parlor-client`: an async client for Parlor over tokio-tungstenite, speaking protocol v1
//! through `parlor-protocol`.
//!
//! - [`Parlor`] is the client for applications: a cloneable handle to one session whose
//!   background task owns the WebSocket, with many requests in flight at once, typed values in
//!   and out (serde), `Event`s on a receiver, and automatic reconnection that resumes the
//!   session (module `reconnect` says when and how soon). See the README's "A client in a few
//!   lines".
//! - [`Client`] is one connection, driven by hand (`&mut self`, `next_frame`): what the
//!   server's tests and the benchmark use to see every frame as it comes.
//! - [`StateMirror`] keeps a room's shared state in step by applying its patches.
//! - `SharedDoc` (feature `yjs`) keeps a Yjs document (`yrs`) in sync with a document room.
//!
//! Both connect to `ws://` and `wss://` (rustls; the Mozilla roots by default, or a
//! `rustls::ClientConfig` of your own, see [`tls_config`]) and send a JWT as the
//! `bearer.<jwt>` subprotocol when given one ([`ConnectOptions`]).

mod data;
#[cfg(feature = "yjs")]
pub mod document;
mod error;
pub mod reconnect;
mod session;
mod transport;

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parlor_protocol::{
    encode_client, ClientFrame, Document, JoinedFrame, Metadata, Ref, ResumedFrame, RoomFilter,
    RoomInfo, RoomOptions, RoomPosition, ServerFrame, SessionId, StateError, StateLimits, StateOp,
    StatePatchFrame, Value, WelcomeFrame,
};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub use parlor_protocol as protocol;
pub use rustls;
pub use tokio_tungstenite::tungstenite;

pub use data::{from_value, to_value, TypedData};
#[cfg(feature = "yjs")]
pub use document::{Handled, SharedDoc};
pub use error::{ClientError, Result};
pub use reconnect::{CloseInfo, ReconnectPolicy};
pub use session::{
    Answer, ClosedEvent, ConnectionState, Event, Events, JoinOptions, Parlor, ParlorBuilder,
    ReconnectingEvent, RequestOptions, ResetEvent, ResumedEvent,
};
pub use transport::{tls_config, websocket_config, ConnectOptions, DEFAULT_CONNECT_TIMEOUT};

use transport::{decode_message, read_frame, Ws};

/// A connected session. Frames that arrive while a request waits for its acknowledgement are
/// kept, in order, for `next_frame`.
pub struct Client {
    ws: Ws,
    welcome: WelcomeFrame,
    next_ref: Ref,
    backlog: VecDeque<ServerFrame>,
}

impl Client {
    /// Connects to a Parlor `ws://` or `wss://` URL and waits for `welcome`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects with a token, TLS settings or a connect timeout.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self> {
        let (ws, welcome) = transport::open(url, options).await?;
        Ok(Self {
            ws,
            welcome,
            next_ref: 1,
            backlog: VecDeque::new(),
        })
    }

    pub fn session_id(&self) -> SessionId {
        self.welcome.session
    }

    pub fn welcome(&self) -> &WelcomeFrame {
        &self.welcome
    }

    /// Sends a frame as is (with whatever `ref` it carries) without waiting for an answer.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        self.send_message(Message::Binary(encode_client(frame)))
            .await
    }

    /// Sends any WebSocket message, for tests of what the server does with bad input.
    pub async fn send_message(&mut self, message: Message) -> Result<()> {
        self.ws.send(message).await?;
        Ok(())
    }

    /// The next frame from the server, answering pings on the way.
    pub async fn next_frame(&mut self) -> Result<ServerFrame> {
        match self.backlog.pop_front() {
            Some(frame) => Ok(frame),
            None => read_frame(&mut self.ws).await,
        }
    }

    /// Takes the frames that arrived while requests waited for their answers, without waiting
    /// for more.
    pub fn drain_buffered(&mut self) -> Vec<ServerFrame> {
        self.backlog.drain(..).collect()
    }

    /// Sends `frame` with a fresh `ref` and waits for its `ok` (Ok) or `error` (Err(Refused)).
    pub async fn request(&mut self, frame: ClientFrame) -> Result<()> {
        self.request_with(frame, |_, _| false).await.map(|_| ())
    }

    /// Like `request`, also taking out of the stream the first frame for which `wanted` holds
    /// (given the request's `ref`: a `joined`, say) and returning it. A `room_list` answering
    /// the request ends it like an `ok` and is returned.
    async fn request_with(
        &mut self,
        mut frame: ClientFrame,
        wanted: impl Fn(&ServerFrame, Ref) -> bool,
    ) -> Result<Option<ServerFrame>> {
        let reference = self.take_ref();
        *frame.reference_mut() = Some(reference);
        self.send(&frame).await?;
        let mut found = None;
        loop {
            let frame = read_frame(&mut self.ws).await?;
            match frame {
                ServerFrame::Ok { reference: r, .. } if r == reference => return Ok(found),
                ServerFrame::Error(e) if e.reference == Some(reference) => {
                    return Err(ClientError::Refused(e))
                }
                ServerFrame::RoomList {
                    reference: Some(r), ..
                } if r == reference => return Ok(Some(frame)),
                ServerFrame::Resumed(ref resumed) if resumed.reference == Some(reference) => {
                    return Ok(Some(frame))
                }
                other if found.is_none() && wanted(&other, reference) => found = Some(other),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// Sends a request that makes this session join a room, and returns its `joined`.
    async fn request_joined(&mut self, frame: ClientFrame) -> Result<JoinedFrame> {
        let joined = self
            .request_with(
                frame,
                |f, r| matches!(f, ServerFrame::Joined(j) if j.reference == Some(r)),
            )
            .await?;
        match joined {
            Some(ServerFrame::Joined(joined)) => Ok(joined),
            _ => Err(ClientError::Unexpected("ok without joined".into())),
        }
    }

    /// Sends a request answered by `room_list`, and returns the rooms.
    async fn request_list(&mut self, frame: ClientFrame) -> Result<Vec<RoomInfo>> {
        match self.request_with(frame, |_, _| false).await? {
            Some(ServerFrame::RoomList { rooms, .. }) => Ok(rooms),
            _ => Err(ClientError::Unexpected("ok instead of room_list".into())),
        }
    }

    /// Takes back session `session` (dropped, or on a connection this client gave up) with the
    /// `resume_token` its `welcome` carried, catching up each room from `positions`. Must be
    /// this connection's first message. On success this client is that session; the missed
    /// frames (or a `joined` per room the history no longer covers) follow the `resumed`.
    pub async fn resume(
        &mut self,
        session: SessionId,
        token: &str,
        positions: Vec<RoomPosition>,
    ) -> Result<ResumedFrame> {
        let frame = ClientFrame::Resume {
            reference: None,
            session,
            token: token.to_owned(),
            rooms: positions,
        };
        match self.request_with(frame, |_, _| false).await? {
            Some(ServerFrame::Resumed(resumed)) => {
                self.welcome.session = resumed.session;
                Ok(resumed)
            }
            _ => Err(ClientError::Unexpected("ok instead of resumed".into())),
        }
    }

    /// Joins `room` and returns its members (this session included).
    pub async fn join(&mut self, room: &str) -> Result<Vec<SessionId>> {
        Ok(self.join_room(room, None).await?.members)
    }

    /// Joins `room`, giving `password` if it has one, and returns everything `joined` says.
    pub async fn join_room(&mut self, room: &str, password: Option<&str>) -> Result<JoinedFrame> {
        self.request_joined(ClientFrame::Join {
            reference: None,
            room: room.into(),
            password: password.map(Into::into),
            create: true,
        })
        .await
    }

    /// Creates a room (named by the server when `room` is `None`) and joins it as owner.
    pub async fn create(
        &mut self,
        room: Option<&str>,
        options: RoomOptions,
    ) -> Result<JoinedFrame> {
        self.request_joined(ClientFrame::Create {
            reference: None,
            room: room.map(Into::into),
            options,
        })
        .await
    }

    /// Joins the fullest open room matching `filter`, or creates one with `options`.
    pub async fn join_or_create(
        &mut self,
        filter: RoomFilter,
        options: RoomOptions,
    ) -> Result<JoinedFrame> {
        self.request_joined(ClientFrame::JoinOrCreate {
            reference: None,
            filter,
            options,
        })
        .await
    }

    /// The public rooms matching `filter` (at most `limit`, or the server's default).
    pub async fn list_rooms(
        &mut self,
        filter: RoomFilter,
        limit: Option<u32>,
    ) -> Result<Vec<RoomInfo>> {
        self.request_list(ClientFrame::ListRooms {
            reference: None,
            filter,
            limit,
        })
        .await
    }

    /// Subscribes to `lobby` updates and returns the matching rooms as they are now.
    pub async fn subscribe_lobby(&mut self, filter: RoomFilter) -> Result<Vec<RoomInfo>> {
        self.request_list(ClientFrame::SubscribeLobby {
            reference: None,
            filter,
        })
        .await
    }

    /// Owner only: locks (`true`) or unlocks `room`.
    pub async fn set_locked(&mut self, room: &str, locked: bool) -> Result<()> {
        self.request(ClientFrame::set_lock(room, locked)).await
    }

    /// Owner only: removes `session` from `room`.
    pub async fn kick(&mut self, room: &str, session: SessionId) -> Result<()> {
        self.request(ClientFrame::Kick {
            reference: None,
            room: room.into(),
            session,
        })
        .await
    }

    /// Owner only: replaces `room`'s metadata.
    pub async fn set_metadata(&mut self, room: &str, metadata: Metadata) -> Result<()> {
        self.request(ClientFrame::SetMetadata {
            reference: None,
            room: room.into(),
            metadata,
        })
        .await
    }

    /// Applies `ops` to `room`'s state (only at version `if_version`, when given).
    pub async fn update_state(
        &mut self,
        room: &str,
        ops: Vec<StateOp>,
        if_version: Option<u64>,
    ) -> Result<()> {
        self.request(ClientFrame::UpdateState {
            reference: None,
            room: room.into(),
            ops,
            if_version,
        })
        .await
    }

    /// Leaves `room`.
    pub async fn leave(&mut self, room: &str) -> Result<()> {
        let frame = ClientFrame::Leave {
            reference: None,
            room: room.into(),
        };
        self.request_with(
            frame,
            |f, _| matches!(f, ServerFrame::Left { room: r, .. } if r == room),
        )
        .await
        .map(|_| ())
    }

    /// Emits an event to `room` and waits for the acknowledgement.
    pub async fn emit(&mut self, room: &str, event: &str, data: Value, echo: bool) -> Result<()> {
        self.request(emit_frame(room, event, data, echo)).await
    }

    /// Sends an event directly to `to` and waits for the acknowledgement.
    pub async fn send_direct(&mut self, to: SessionId, event: &str, data: Value) -> Result<()> {
        self.request(ClientFrame::Send {
            reference: None,
            to,
            event: event.into(),
            data,
        })
        .await
    }

    /// Closes cleanly (close frame, then waits for the server's).
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await?;
        while let Some(message) = self.ws.next().await {
            if message.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Resets the TCP connection without a close frame, as a crashed client would.
    pub fn abort(self) {
        transport::reset_on_drop(&self.ws);
        drop(self);
    }

    /// Reads until the server closes the connection and returns its close frame, discarding
    /// anything else. For tests of fatal errors.
    pub async fn wait_closed(mut self) -> Option<CloseFrame> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Splits into a sender and a receiver that can be used from different tasks.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        let (sink, stream) = self.ws.split();
        (
            ClientSender {
                sink,
                next_ref: self.next_ref,
            },
            ClientReceiver {
                stream,
                backlog: self.backlog,
            },
        )
    }

    fn take_ref(&mut self) -> Ref {
        let reference = self.next_ref;
        self.next_ref += 1;
        reference
    }
}

/// The sending half of a split client. Requests carry fresh `ref`s; their answers arrive on
/// the `ClientReceiver`.
pub struct ClientSender {
    sink: SplitSink<Ws, Message>,
    next_ref: Ref,
}

impl ClientSender {
    /// Sends `frame` with a fresh `ref`, returned so the caller can match the answer.
    pub async fn send(&mut self, mut frame: ClientFrame) -> Result<Ref> {
        let reference = self.next_ref;
        self.next_ref += 1;
        *frame.reference_mut() = Some(reference);
        self.send_raw(encode_client(&frame)).await?;
        Ok(reference)
    }

    /// Sends an already-encoded frame (the benchmark encodes once per payload).
    pub async fn send_raw(&mut self, bytes: Bytes) -> Result<()> {
        self.sink.send(Message::Binary(bytes)).await?;
        Ok(())
    }

    pub async fn close(&mut self) -> Result<()> {
        self.sink.close().await?;
        Ok(())
    }
}

/// The receiving half of a split client.
pub struct ClientReceiver {
    stream: SplitStream<Ws>,
    backlog: VecDeque<ServerFrame>,
}

impl ClientReceiver {
    pub async fn next_frame(&mut self) -> Result<ServerFrame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Ok(frame);
        }
        loop {
            match self.stream.next().await {
                Some(Ok(message)) => {
                    if let Some(frame) = decode_message(message)? {
                        return Ok(frame);
                    }
                }
                Some(Err(err)) => return Err(err.into()),
                None => return Err(ClientError::Closed(None)),
            }
        }
    }
}

/// An `emit` frame without a `ref`.
pub fn emit_frame(room: &str, event: &str, data: Value, echo: bool) -> ClientFrame {
    ClientFrame::Emit {
        reference: None,
        room: room.into(),
        event: event.into(),
        data,
        echo,
    }
}

/// A room's shared state as this client knows it: the snapshot from `joined`, moved forward by
/// every `state_patch` in order.
#[derive(Clone, Debug, PartialEq)]
pub struct StateMirror {
    pub state: Document,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MirrorError {
    #[error("patch to version {got} does not follow version {have}: a patch was missed")]
    Gap { have: u64, got: u64 },
    #[error("the server's patch does not apply: {0}")]
    Apply(#[from] StateError),
}

impl StateMirror {
    pub fn from_joined(joined: &JoinedFrame) -> Self {
        Self {
            state: joined.state.clone(),
            version: joined.version,
        }
    }

    /// Applies a `state_patch`. Patches the snapshot already holds are skipped; a gap is an
    /// error, since the mirror can no longer be trusted.
    pub fn apply(&mut self, frame: &StatePatchFrame) -> Result<(), MirrorError> {
        for patch in &frame.patches {
            if patch.version <= self.version {
                continue;
            }
            if patch.version != self.version + 1 {
                return Err(MirrorError::Gap {
                    have: self.version,
                    got: patch.version,
                });
            }
            self.state.apply(&patch.ops, StateLimits::UNBOUNDED)?;
            self.version = patch.version;
        }
        Ok(())
    }
}
