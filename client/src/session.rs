//! `Parlor`: one session that outlives its connections, behind a cloneable handle.
//!
//! A background task owns the WebSocket. Handles send it requests; each gets a fresh `ref` and a
//! oneshot that the answer with that `ref` settles, so any number of requests from any number of
//! clones are in flight at once. Everything else the server sends (room frames, presence,
//! direct events, the lobby) and what happens to the connection arrive, in order, as `Event`s
//! on the `Events` receiver that `connect` returns.
//!
//! When the connection drops with a code that means "come back" (see `reconnect`), the task
//! reconnects with backoff and full jitter and resumes the session with its token and its
//! position in every room, so the rooms' missed frames arrive once each, in order (or a
//! snapshot replaces a room whose history no longer reaches back); when the resume is refused
//! it carries on as the new connection's fresh session and says which rooms were lost. The
//! lobby subscription is made again either way. The same behaviour as `web/parlor.js`.
//!
//! No request waits forever: made while reconnecting, or waiting for its answer when the
//! connection ends, it settles at once with `ClientError::Disconnected` (unless it asked to
//! wait for the reconnect), and it may carry a timeout (`ClientError::Timeout`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::future::poll_fn;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use parlor_protocol::{
    decode_server, encode_client, ClientFrame, DirectFrame, ErrorCode, ErrorFrame, EventFrame,
    JoinedFrame, LeaveReason, LobbyFrame, Metadata, PresenceFrame, Ref, ResumedFrame, RoomFilter,
    RoomInfo, RoomOptions, RoomPosition, RoomUpdateFrame, ServerFrame, SessionId, StateOp,
    StatePatchFrame, WelcomeFrame,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::reconnect::{should_retry, Backoff, CloseInfo, ReconnectPolicy};
use crate::transport::{self, ConnectOptions, Ws, DEFAULT_CONNECT_TIMEOUT, SERVER_FRAME_DEPTH};
use crate::{data, ClientError, Result};

/// How long a closing connection waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A Parlor session that reconnects by itself. Cheap to clone: every clone drives the same
/// session, and requests from all of them may be in flight at once. Open one with
/// `Parlor::connect` or `Parlor::builder`; read what happens on the `Events` returned beside
/// it. When every clone is dropped the connection is closed (as by `close`).
#[derive(Clone, Debug)]
pub struct Parlor {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    options: RequestOptions,
}

/// How one request behaves; set for a handle with `Parlor::with_timeout`,
/// `Parlor::waiting_for_reconnect` or `Parlor::with_options` (or for all with the builder).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Settle with `ClientError::Timeout` if no answer came within this long. The request's
    /// outcome is then unknown: the server may have carried it out.
    pub timeout: Option<Duration>,
    /// Made while reconnecting: hold the request and send it once the session is back
    /// (resumed or reset) instead of failing it with `Disconnected { sent: false }`. A request
    /// already sent when the connection ends still fails with `Disconnected { sent: true }`: it
    /// is never sent twice, since the server may have carried it out.
    pub wait_for_reconnect: bool,
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    Open,
    /// The connection was lost; attempt `attempt` is under way or waiting for its delay.
    Reconnecting {
        attempt: u32,
    },
    /// For good: `close`, a close code that means "stay away", or it gave up reconnecting.
    Closed,
}

/// `join` and `join_with`: the room's password, and whether a room that does not exist is
/// made (the default) or refused with `room_not_found` ("join by id").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    pub password: Option<String>,
    pub create: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            password: None,
            create: true,
        }
    }
}

impl JoinOptions {
    /// Join only a room that exists (`room_not_found` otherwise).
    pub fn existing() -> Self {
        Self {
            create: false,
            ..Self::default()
        }
    }

    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// The answer to a request sent with `Parlor::request`.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `ok`.
    Done,
    /// `joined` then `ok`: the session is now in the room (`join`, `create`,
    /// `join_or_create`).
    Joined(Box<JoinedFrame>),
    /// `room_list` (`list_rooms`, `subscribe_lobby`).
    Rooms(Vec<RoomInfo>),
    /// `ok` with `data`: a room's logic answered (an `emit` to a room with logic).
    Data(parlor_protocol::Value),
}

/// What happens to the session, in the order it happened. Frames that answer requests are not
/// here: they settle the requests.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// An event emitted to a room this session is in.
    RoomEvent(EventFrame),
    /// Another session joined, left, went away from or came back to a room.
    Presence(PresenceFrame),
    /// A room's owner, lock or metadata changed.
    RoomUpdate(RoomUpdateFrame),
    /// Changes to a room's shared state (apply them to a `StateMirror`).
    StatePatch(StatePatchFrame),
    /// An event sent to this session alone.
    Direct(DirectFrame),
    /// This member's own view of a room with logic (it replaces the one before).
    View(parlor_protocol::ViewFrame),
    /// The session is in this room as the snapshot says, replacing what the application had:
    /// after a resume that could not replay the room (named in `ResumedEvent::snapshot`), or
    /// for a join whose request stopped waiting (timed out) before its answer.
    Joined(JoinedFrame),
    /// The session is no longer in `room` (its own `leave`, kicked by the owner, ...). Rooms
    /// lost across a reconnect are named by `Resumed` and `Reset` instead.
    Left { room: String, reason: LeaveReason },
    /// Public rooms added, changed or removed, while subscribed to the lobby.
    Lobby(LobbyFrame),
    /// The lobby subscription was made again after a reconnect: the rooms as they are now
    /// (replace the list), `Lobby` updates follow.
    LobbyRooms(Vec<RoomInfo>),
    /// An `error` no request waits for (a frame the server could not read, or the answer to a
    /// request made again by the client itself, such as the lobby's subscription).
    Error(ErrorFrame),
    /// The connection was lost; attempt `attempt` starts after `delay`.
    Reconnecting(ReconnectingEvent),
    /// The session is back, with its rooms.
    Resumed(ResumedEvent),
    /// The session could not be resumed; a fresh one replaced it.
    Reset(ResetEvent),
    /// The client is closed for good; this is the last event.
    Closed(ClosedEvent),
}

/// `Event::Reconnecting`.
#[derive(Clone, Debug)]
pub struct ReconnectingEvent {
    /// 1 for the first attempt after a connection was lost.
    pub attempt: u32,
    /// How long until this attempt starts (drawn at random up to the backoff's ceiling).
    pub delay: Duration,
    /// How the lost connection ended.
    pub close: CloseInfo,
    /// Why the previous attempt failed (none for the first).
    pub error: Option<Arc<ClientError>>,
}

/// `Event::Resumed`: every room the session was in is named in one of the three lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumedEvent {
    pub session: SessionId,
    /// Rooms whose missed frames follow, each once and in order, as ordinary events.
    pub recovered: Vec<String>,
    /// Rooms whose history no longer reached back: an `Event::Joined` snapshot of each follows.
    pub snapshot: Vec<String>,
    /// Rooms the session is no longer in (it was removed while away).
    pub lost: Vec<String>,
}

/// `Event::Reset`: the old session is gone (the grace passed, or the server lost it); this
/// connection is a new session in no room.
#[derive(Clone, Debug, PartialEq)]
pub struct ResetEvent {
    pub session: SessionId,
    pub previous: SessionId,
    /// Every room the previous session was in.
    pub lost: Vec<String>,
    /// The server's refusal of the resume (`resume_failed`); `None` when the session was in
    /// no room, so there was nothing to resume.
    pub refusal: Option<ErrorFrame>,
}

/// `Event::Closed`.
#[derive(Clone, Debug)]
pub struct ClosedEvent {
    /// How the last connection ended (1000 when the application closed it).
    pub close: CloseInfo,
    /// Why reconnecting stopped, when it did: the last attempt's error.
    pub error: Option<Arc<ClientError>>,
}

/// The events of one `Parlor` session, in order; a `Stream` too. Read them: they queue until
/// you do (drop this receiver if you want none). It ends after `Event::Closed`.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the client is closed and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.receiver.poll_recv(cx)
    }
}

/// Settings for `Parlor`: `Parlor::builder(url)...connect()`.
#[derive(Clone, Debug)]
pub struct ParlorBuilder {
    url: String,
    connect: ConnectOptions,
    reconnect: Option<ReconnectPolicy>,
    options: RequestOptions,
}

impl ParlorBuilder {
    /// A JWT for a server with `[auth]`, sent as the `bearer.<jwt>` subprotocol on every
    /// connection.
    pub fn token(mut self, jwt: impl Into<String>) -> Self {
        self.connect.token = Some(jwt.into());
        self
    }

    /// The TLS settings for `wss://` (see `tls_config` for a private CA's roots); by default
    /// the Mozilla roots.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.connect.tls = Some(config);
        self
    }

    /// How long each connection may take to be welcomed (10 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect.connect_timeout = Some(timeout);
        self
    }

    /// Every connection setting at once.
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.connect = options;
        self
    }

    /// How to reconnect (on by default, with `ReconnectPolicy::default()`).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Never reconnect: a lost connection closes the client for good.
    pub fn no_reconnect(mut self) -> Self {
        self.reconnect = None;
        self
    }

    /// The default timeout of every request (none by default).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Whether requests made while reconnecting wait for the reconnect by default (they fail
    /// at once with `Disconnected` by default).
    pub fn wait_for_reconnect(mut self, wait: bool) -> Self {
        self.options.wait_for_reconnect = wait;
        self
    }

    /// Opens the first connection (not retried: an error here is the caller's to show) and
    /// starts the task that owns it.
    pub async fn connect(self) -> Result<(Parlor, Events)> {
        let (ws, welcome) = transport::open(&self.url, &self.connect).await?;
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let (events, receiver) = mpsc::unbounded_channel();
        let (status_sender, status) = watch::channel(Status {
            state: ConnectionState::Open,
            welcome: Arc::new(welcome.clone()),
            close: None,
        });
        let task = Task {
            url: self.url,
            connect: self.connect,
            policy: self.reconnect,
            commands: command_receiver,
            events,
            status: status_sender,
            token: welcome.resume_token.clone(),
            welcome,
            next_ref: 1,
            pending: HashMap::new(),
            queued: VecDeque::new(),
            outbox: Outbox::default(),
            rooms: BTreeMap::new(),
            lobby: None,
        };
        tokio::spawn(task.run(ws));
        let parlor = Parlor {
            commands,
            status,
            options: self.options,
        };
        Ok((parlor, Events { receiver }))
    }
}

impl Parlor {
    /// Connects to a Parlor `ws://` or `wss://` URL with the defaults: reconnecting on, no
    /// token, no request timeout.
    pub async fn connect(url: &str) -> Result<(Parlor, Events)> {
        Self::builder(url).connect().await
    }

    /// Settings before connecting.
    pub fn builder(url: impl Into<String>) -> ParlorBuilder {
        ParlorBuilder {
            url: url.into(),
            connect: ConnectOptions::default(),
            reconnect: Some(ReconnectPolicy::default()),
            options: RequestOptions::default(),
        }
    }

    /// This session's id: the same across resumes, a new one after a reset.
    pub fn session_id(&self) -> SessionId {
        self.status.borrow().welcome.session
    }

    /// The welcome of the session as it is now (after a resume: the resumed session and its
    /// token, with the limits of the new connection).
    pub fn welcome(&self) -> Arc<WelcomeFrame> {
        self.status.borrow().welcome.clone()
    }

    pub fn state(&self) -> ConnectionState {
        self.status.borrow().state
    }

    /// The options this handle's requests are made with.
    pub fn request_options(&self) -> RequestOptions {
        self.options
    }

    /// A handle to the same session whose requests are made with `options`.
    pub fn with_options(&self, options: RequestOptions) -> Parlor {
        Parlor {
            options,
            ..self.clone()
        }
    }

    /// A handle to the same session whose requests time out after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Parlor {
        self.with_options(RequestOptions {
            timeout: Some(timeout),
            ..self.options
        })
    }

    /// A handle to the same session whose requests, made while reconnecting, wait for the
    /// reconnect instead of failing (combine with `with_timeout` to bound the wait).
    pub fn waiting_for_reconnect(&self) -> Parlor {
        self.with_options(RequestOptions {
            wait_for_reconnect: true,
            ..self.options
        })
    }

    /// Sends any request frame (its `ref` is set here) and waits for its answer. `resume` is
    /// refused: the client resumes by itself.
    pub async fn request(&self, frame: ClientFrame) -> Result<Answer> {
        if matches!(frame, ClientFrame::Resume { .. }) {
            return Err(ClientError::Unexpected(
                "`resume` is the client's own: Parlor resumes by itself".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::Request {
            frame: Box::new(frame),
            wait: self.options.wait_for_reconnect,
            reply,
        };
        if self.commands.send(command).is_err() {
            return Err(self.closed());
        }
        // A reply dropped unanswered means the task ended: the client is closed.
        let answer = async { answer.await.unwrap_or_else(|_| Err(self.closed())) };
        match self.options.timeout {
            Some(limit) => tokio::time::timeout(limit, answer)
                .await
                .unwrap_or(Err(ClientError::Timeout)),
            None => answer.await,
        }
    }

    /// Joins `room`, making it with the default rules if it does not exist.
    pub async fn join(&self, room: &str) -> Result<JoinedFrame> {
        self.join_with(room, JoinOptions::default()).await
    }

    /// Joins `room` with a password, or only if it exists (`JoinOptions::existing()`).
    pub async fn join_with(&self, room: &str, options: JoinOptions) -> Result<JoinedFrame> {
        self.joined(ClientFrame::Join {
            reference: None,
            room: room.into(),
            password: options.password,
            create: options.create,
        })
        .await
    }

    /// Creates a room (named by the server when `room` is `None`) and joins it as its owner.
    pub async fn create(&self, room: Option<&str>, options: RoomOptions) -> Result<JoinedFrame> {
        self.joined(ClientFrame::Create {
            reference: None,
            room: room.map(Into::into),
            options,
        })
        .await
    }

    /// Joins the fullest open public room matching `filter`, or creates one with `options`.
    pub async fn join_or_create(
        &self,
        filter: RoomFilter,
        options: RoomOptions,
    ) -> Result<JoinedFrame> {
        self.joined(ClientFrame::JoinOrCreate {
            reference: None,
            filter,
            options,
        })
        .await
    }

    /// Leaves `room` (`Event::Left` follows too).
    pub async fn leave(&self, room: &str) -> Result<()> {
        self.done(ClientFrame::Leave {
            reference: None,
            room: room.into(),
        })
        .await
    }

    /// Emits `event` with `data` (any `Serialize`, structs as maps) to every other member of
    /// `room`; settles when the server acknowledges it.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        room: &str,
        event: &str,
        data: &T,
    ) -> Result<()> {
        self.emit_to(room, event, data, false).await
    }

    /// Sends `event` with `data` to a room with logic and returns the logic's answer, read as
    /// `R` (`None` if it answered with no data). A refusal is `ClientError::Refused` with the
    /// game's own code in the frame's `reason`.
    pub async fn ask<T: Serialize + ?Sized, R: serde::de::DeserializeOwned>(
        &self,
        room: &str,
        event: &str,
        data: &T,
    ) -> Result<Option<R>> {
        let answer = self
            .request(ClientFrame::Emit {
                reference: None,
                room: room.into(),
                event: event.into(),
                data: data::to_value(data)?,
                echo: false,
            })
            .await?;
        match answer {
            Answer::Data(value) => data::from_value(&value).map(Some),
            _ => Ok(None),
        }
    }

    /// Like `emit`, and this session receives the event too (as `Event::RoomEvent`).
    pub async fn emit_echo<T: Serialize + ?Sized>(
        &self,
        room: &str,
        event: &str,
        data: &T,
    ) -> Result<()> {
        self.emit_to(room, event, data, true).await
    }

    async fn emit_to<T: Serialize + ?Sized>(
        &self,
        room: &str,
        event: &str,
        data: &T,
        echo: bool,
    ) -> Result<()> {
        self.done(ClientFrame::Emit {
            reference: None,
            room: room.into(),
            event: event.into(),
            data: data::to_value(data)?,
            echo,
        })
        .await
    }

    /// Sends `event` with `data` to session `to` alone (it must share a room with this one).
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        to: SessionId,
        event: &str,
        data: &T,
    ) -> Result<()> {
        self.done(ClientFrame::Send {
            reference: None,
            to,
            event: event.into(),
            data: data::to_value(data)?,
        })
        .await
    }

    /// Owner only: locks (`true`) or unlocks `room`.
    pub async fn set_locked(&self, room: &str, locked: bool) -> Result<()> {
        self.done(ClientFrame::set_lock(room, locked)).await
    }

    /// Owner only: removes `session` from `room`.
    pub async fn kick(&self, room: &str, session: SessionId) -> Result<()> {
        self.done(ClientFrame::Kick {
            reference: None,
            room: room.into(),
            session,
        })
        .await
    }

    /// Owner only: replaces `room`'s metadata.
    pub async fn set_metadata(&self, room: &str, metadata: Metadata) -> Result<()> {
        self.done(ClientFrame::SetMetadata {
            reference: None,
            room: room.into(),
            metadata,
        })
        .await
    }

    /// Applies `ops` to `room`'s shared state, all or nothing (only at version `if_version`,
    /// when given: compare-and-set).
    pub async fn update_state(
        &self,
        room: &str,
        ops: Vec<StateOp>,
        if_version: Option<u64>,
    ) -> Result<()> {
        self.done(ClientFrame::UpdateState {
            reference: None,
            room: room.into(),
            ops,
            if_version,
        })
        .await
    }

    /// Sets `path` of `room`'s shared state to `value` (any `Serialize`).
    pub async fn set_state<T: Serialize + ?Sized>(
        &self,
        room: &str,
        path: &[&str],
        value: &T,
    ) -> Result<()> {
        let op = StateOp::Set {
            path: path.iter().map(|key| key.to_string()).collect(),
            value: data::to_value(value)?,
        };
        self.update_state(room, vec![op], None).await
    }

    /// The public rooms matching `filter` (at most `limit`, or the server's default).
    pub async fn list_rooms(
        &self,
        filter: RoomFilter,
        limit: Option<u32>,
    ) -> Result<Vec<RoomInfo>> {
        self.rooms(ClientFrame::ListRooms {
            reference: None,
            filter,
            limit,
        })
        .await
    }

    /// Watches the public rooms matching `filter`: returns them as they are now, then
    /// `Event::Lobby` tells what changes. Made again after every reconnect
    /// (`Event::LobbyRooms`).
    pub async fn subscribe_lobby(&self, filter: RoomFilter) -> Result<Vec<RoomInfo>> {
        self.rooms(ClientFrame::SubscribeLobby {
            reference: None,
            filter,
        })
        .await
    }

    pub async fn unsubscribe_lobby(&self) -> Result<()> {
        self.done(ClientFrame::UnsubscribeLobby { reference: None })
            .await
    }

    /// Closes the connection for good (the session leaves its rooms at once) and waits for the
    /// task to finish. Requests still waiting settle with `Disconnected { sent: true }` unless
    /// their answers arrive while the connection closes; later ones with `Closed`.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Close { done }).is_ok() {
            let _ = finished.await;
        }
    }

    async fn joined(&self, frame: ClientFrame) -> Result<JoinedFrame> {
        match self.request(frame).await? {
            Answer::Joined(joined) => Ok(*joined),
            other => Err(ClientError::Unexpected(format!(
                "{other:?} instead of joined"
            ))),
        }
    }

    async fn done(&self, frame: ClientFrame) -> Result<()> {
        self.request(frame).await.map(|_| ())
    }

    async fn rooms(&self, frame: ClientFrame) -> Result<Vec<RoomInfo>> {
        match self.request(frame).await? {
            Answer::Rooms(rooms) => Ok(rooms),
            other => Err(ClientError::Unexpected(format!(
                "{other:?} instead of room_list"
            ))),
        }
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed(self.status.borrow().close.clone())
    }
}

/// What the handles can see of the task.
#[derive(Clone, Debug)]
struct Status {
    state: ConnectionState,
    welcome: Arc<WelcomeFrame>,
    /// The close frame that ended the client, once closed.
    close: Option<CloseFrame>,
}

type Reply = oneshot::Sender<Result<Answer>>;

#[derive(Debug)]
enum Command {
    Request {
        frame: Box<ClientFrame>,
        wait: bool,
        reply: Reply,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A request sent on the current connection, waiting for the answer with its `ref`.
struct Pending {
    /// `None` for the client's own requests (the lobby subscription made again).
    reply: Option<Reply>,
    /// The filter of a `subscribe_lobby`, remembered once it succeeds.
    lobby: Option<RoomFilter>,
    /// The `joined` that came before the `ok`.
    joined: Option<JoinedFrame>,
}

/// How a connection ended.
enum End {
    /// By itself: reconnect, or give up, as its close says.
    Lost(CloseInfo, Option<CloseFrame>),
    /// `close` (with whom to tell), or every handle dropped.
    Closed(Option<oneshot::Sender<()>>),
}

enum ResumeAnswer {
    Resumed(ResumedFrame),
    Refused(ErrorFrame),
}

/// The background task: owns the connection and everything about the session.
struct Task {
    url: String,
    connect: ConnectOptions,
    policy: Option<ReconnectPolicy>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    status: watch::Sender<Status>,
    /// The session's resume token (the welcome of a resumed connection carries another's).
    token: String,
    welcome: WelcomeFrame,
    /// Refs are never reused, even across connections.
    next_ref: Ref,
    pending: HashMap<Ref, Pending>,
    /// Requests waiting for the reconnect, in the order they were made.
    queued: VecDeque<(ClientFrame, Reply)>,
    /// What waits to be written on the current connection.
    outbox: Outbox,
    /// Where the session is in each of its rooms, for the resume.
    rooms: BTreeMap<String, RoomPosition>,
    /// The lobby filter to subscribe with again after a reconnect.
    lobby: Option<RoomFilter>,
}

impl Task {
    async fn run(mut self, first: Ws) {
        let mut ws = first;
        loop {
            match self.serve(ws).await {
                End::Closed(done) => {
                    self.finish(Some(client_close()), None);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                End::Lost(close, frame) => match self.reconnect(close, frame).await {
                    Some(next) => ws = next,
                    None => return,
                },
            }
        }
    }

    /// Carries requests and frames over one connection until it ends. Reading and writing
    /// go on side by side: a request is queued in the outbox at once, and a server slow to
    /// read never stops this client from reading what it sends.
    async fn serve(&mut self, ws: Ws) -> End {
        // The server pings every `heartbeat_ms`: hearing nothing for that and its own timeout
        // means the connection is dead even if TCP has not noticed (a cable pulled, a NAT
        // that forgot the connection).
        let silence = match self.welcome.heartbeat_ms {
            0 => Duration::from_secs(365 * 24 * 3600),
            heartbeat => Duration::from_millis(heartbeat.saturating_add(self.welcome.timeout_ms)),
        };
        let mut deadline = Instant::now() + silence;
        let (mut sink, mut stream) = ws.split();
        loop {
            tokio::select! {
                message = stream.next() => {
                    deadline = Instant::now() + silence;
                    match message {
                        Some(Ok(Message::Binary(bytes))) => {
                            // A frame this client cannot read (a newer server's) is skipped, as
                            // PROTOCOL.md asks.
                            if let Ok(frame) = decode_server(&bytes, SERVER_FRAME_DEPTH) {
                                self.route(frame);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite queued the reply to the close; this sends it.
                            let _ = tokio::time::timeout(CLOSE_WAIT, sink.flush()).await;
                            let close = CloseInfo::from_frame(frame.as_ref());
                            return self.lost(close, frame);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(err)) => return self.lost(CloseInfo::abnormal(err.to_string()), None),
                        None => return self.lost(CloseInfo::abnormal("the connection ended"), None),
                    }
                }
                written = self.outbox.flush(&mut sink), if !self.outbox.is_idle() => {
                    if let Err(err) = written {
                        return self.lost(CloseInfo::abnormal(err.to_string()), None);
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Request { frame, reply, .. }) => self.transmit(*frame, Some(reply)),
                    Some(Command::Close { done }) => {
                        self.close_gracefully(sink, stream).await;
                        return End::Closed(Some(done));
                    }
                    None => {
                        self.close_gracefully(sink, stream).await;
                        return End::Closed(None);
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    if let Ok(ws) = stream.reunite(sink) {
                        transport::reset_on_drop(&ws);
                    }
                    let why = format!("no sign of life from the server for {} ms", silence.as_millis());
                    return self.lost(CloseInfo::abnormal(why), None);
                }
            }
        }
    }

    /// The connection ended: every request waiting for an answer fails now, since none will
    /// come.
    fn lost(&mut self, close: CloseInfo, frame: Option<CloseFrame>) -> End {
        self.fail_pending();
        End::Lost(close, frame)
    }

    /// Fails every request waiting for an answer: those still in the outbox were not sent;
    /// the others may have been carried out.
    fn fail_pending(&mut self) {
        let unsent = self.outbox.clear();
        for (reference, pending) in self.pending.drain() {
            if let Some(reply) = pending.reply {
                let sent = !unsent.contains(&reference);
                let _ = reply.send(Err(ClientError::Disconnected { sent }));
            }
        }
    }

    /// Writes what is queued and the client's close, then waits (briefly) for the server's,
    /// settling requests whose answers still arrive.
    async fn close_gracefully(
        &mut self,
        mut sink: SplitSink<Ws, Message>,
        mut stream: SplitStream<Ws>,
    ) {
        self.outbox.push(None, Message::Close(Some(client_close())));
        let closing = async {
            if self.outbox.flush(&mut sink).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Binary(bytes) = message {
                    if let Ok(frame) = decode_server(&bytes, SERVER_FRAME_DEPTH) {
                        self.route(frame);
                    }
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, closing).await;
    }

    /// Queues a request with a fresh `ref` on the current connection.
    fn transmit(&mut self, mut frame: ClientFrame, reply: Option<Reply>) {
        if reply.as_ref().is_some_and(|reply| reply.is_closed()) {
            // Its caller stopped waiting (a timeout, a dropped future) before it went out: it
            // is not sent at all.
            return;
        }
        let lobby = match &frame {
            ClientFrame::SubscribeLobby { filter, .. } => Some(filter.clone()),
            ClientFrame::UnsubscribeLobby { .. } => {
                self.lobby = None;
                None
            }
            _ => None,
        };
        let reference = self.take_ref();
        *frame.reference_mut() = Some(reference);
        self.pending.insert(
            reference,
            Pending {
                reply,
                lobby,
                joined: None,
            },
        );
        self.outbox
            .push(Some(reference), Message::Binary(encode_client(&frame)));
    }

    fn take_ref(&mut self) -> Ref {
        let reference = self.next_ref;
        self.next_ref += 1;
        reference
    }

    /// Settles the request a frame answers, follows the session's rooms, and hands the rest to
    /// the application.
    fn route(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Ok {
                reference, data, ..
            } => {
                let Some(pending) = self.pending.remove(&reference) else {
                    return;
                };
                match pending.reply {
                    Some(reply) if reply.is_closed() => {
                        // Its caller gave up; the application still learns where it now is.
                        if let Some(joined) = pending.joined {
                            self.emit(Event::Joined(joined));
                        }
                    }
                    Some(reply) => {
                        let answer = match (pending.joined, data) {
                            (Some(joined), _) => Answer::Joined(Box::new(joined)),
                            (None, Some(data)) => Answer::Data(data),
                            (None, None) => Answer::Done,
                        };
                        let _ = reply.send(Ok(answer));
                    }
                    None => {}
                }
            }
            ServerFrame::Error(error) => {
                let pending = error.reference.and_then(|r| self.pending.remove(&r));
                match pending.and_then(|pending| pending.reply) {
                    Some(reply) => {
                        let _ = reply.send(Err(ClientError::Refused(error)));
                    }
                    None => self.emit(Event::Error(error)),
                }
            }
            ServerFrame::RoomList { reference, rooms } => {
                let Some(pending) = reference.and_then(|r| self.pending.remove(&r)) else {
                    return;
                };
                let subscribed = pending.lobby.is_some();
                if subscribed {
                    self.lobby = pending.lobby;
                }
                match pending.reply {
                    Some(reply) if !reply.is_closed() => {
                        let _ = reply.send(Ok(Answer::Rooms(rooms)));
                    }
                    // Subscribed again by the client itself, or for a caller that gave up.
                    _ if subscribed => self.emit(Event::LobbyRooms(rooms)),
                    _ => {}
                }
            }
            ServerFrame::Joined(joined) => {
                self.rooms
                    .insert(joined.room.clone(), RoomPosition::from_joined(&joined));
                let waiting = joined
                    .reference
                    .and_then(|r| self.pending.get_mut(&r))
                    .filter(|p| p.reply.as_ref().is_some_and(|reply| !reply.is_closed()));
                match waiting {
                    Some(pending) => pending.joined = Some(joined),
                    None => self.emit(Event::Joined(joined)),
                }
            }
            ServerFrame::Left { room, reason } => {
                self.rooms.remove(&room);
                self.emit(Event::Left { room, reason });
            }
            ServerFrame::Event(_)
            | ServerFrame::Presence(_)
            | ServerFrame::RoomUpdate(_)
            | ServerFrame::StatePatch(_) => {
                // A frame behind the room's position was seen already (replayed and live at
                // once): each reaches the application once.
                let position = frame
                    .room_offset()
                    .and_then(|(room, _)| self.rooms.get_mut(room));
                if let Some(position) = position {
                    if position.advance(&frame) == Some(false) {
                        return;
                    }
                }
                match frame {
                    ServerFrame::Event(e) => self.emit(Event::RoomEvent(e)),
                    ServerFrame::Presence(p) => self.emit(Event::Presence(p)),
                    ServerFrame::RoomUpdate(u) => self.emit(Event::RoomUpdate(u)),
                    ServerFrame::StatePatch(p) => self.emit(Event::StatePatch(p)),
                    _ => {}
                }
            }
            ServerFrame::Direct(direct) => self.emit(Event::Direct(direct)),
            ServerFrame::View(view) => self.emit(Event::View(view)),
            ServerFrame::Lobby(lobby) => self.emit(Event::Lobby(lobby)),
            // Only a connection's first frames are these; `open` and `take_back` read them.
            ServerFrame::Welcome(_) | ServerFrame::Resumed(_) => {}
        }
    }

    fn emit(&self, event: Event) {
        // An application that dropped its `Events` wants none.
        let _ = self.events.send(event);
    }

    fn set_state(&self, state: ConnectionState) {
        self.status.send_modify(|status| status.state = state);
    }

    /// Reconnects after a lost connection, attempt after attempt; the new connection, or
    /// `None` once the client is closed for good.
    async fn reconnect(&mut self, close: CloseInfo, frame: Option<CloseFrame>) -> Option<Ws> {
        let Some(policy) = self.policy.clone().filter(|_| close.should_reconnect()) else {
            self.finish(frame, None);
            return None;
        };
        let mut backoff = Backoff::new(policy);
        let mut error: Option<Arc<ClientError>> = None;
        // The URL and settings are cloned so that the attempt does not borrow the task, which
        // keeps answering the handles meanwhile.
        let (url, options) = (self.url.clone(), self.connect.clone());
        loop {
            let Some((attempt, delay)) = backoff.next_delay() else {
                self.finish(frame, error);
                return None;
            };
            self.set_state(ConnectionState::Reconnecting { attempt });
            self.emit(Event::Reconnecting(ReconnectingEvent {
                attempt,
                delay,
                close: close.clone(),
                error: error.clone(),
            }));
            self.idle(tokio::time::sleep(delay)).await?;
            let (ws, welcome) = match self.idle(transport::open(&url, &options)).await? {
                Ok(opened) => opened,
                Err(err) if should_retry(&err) => {
                    error = Some(Arc::new(err));
                    continue;
                }
                Err(err) => {
                    self.finish(frame, Some(Arc::new(err)));
                    return None;
                }
            };
            match self.take_back(ws, welcome).await? {
                Ok(ws) => {
                    self.reopened();
                    return Some(ws);
                }
                Err(err) => error = Some(Arc::new(err)),
            }
        }
    }

    /// Runs `future` while answering the handles as a disconnected client does: requests
    /// wait for the reconnect or fail at once, `close` ends the client (then `None`).
    async fn idle<F: Future>(&mut self, future: F) -> Option<F::Output> {
        tokio::pin!(future);
        loop {
            tokio::select! {
                output = &mut future => return Some(output),
                command = self.commands.recv() => match command {
                    Some(Command::Request { frame, wait, reply }) => {
                        if wait {
                            self.queued.push_back((*frame, reply));
                        } else {
                            let _ = reply.send(Err(ClientError::Disconnected { sent: false }));
                        }
                    }
                    Some(Command::Close { done }) => {
                        self.finish(Some(client_close()), None);
                        let _ = done.send(());
                        return None;
                    }
                    None => {
                        self.finish(Some(client_close()), None);
                        return None;
                    }
                },
            }
        }
    }

    /// On a new connection: resumes the session (its first message, as the server requires),
    /// or carries on as the connection's fresh session. `Err` when this attempt failed;
    /// `None` once the client is closed.
    async fn take_back(&mut self, mut ws: Ws, welcome: WelcomeFrame) -> Option<Result<Ws>> {
        if self.rooms.is_empty() {
            // The server holds no session that is in no room: there is nothing to resume.
            self.reset(welcome, None);
            return Some(Ok(ws));
        }
        let reference = self.take_ref();
        let resume = ClientFrame::Resume {
            reference: Some(reference),
            session: self.welcome.session,
            token: self.token.clone(),
            rooms: self.rooms.values().cloned().collect(),
        };
        if let Err(err) = ws.send(Message::Binary(encode_client(&resume))).await {
            return Some(Err(err.into()));
        }
        let limit = self
            .connect
            .connect_timeout
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let answer = self
            .idle(tokio::time::timeout(
                limit,
                resume_answer(&mut ws, reference),
            ))
            .await?;
        match answer {
            Err(_) => Some(Err(ClientError::ConnectTimeout(limit))),
            Ok(Err(err)) => Some(Err(err)),
            Ok(Ok(ResumeAnswer::Resumed(resumed))) => {
                self.resumed(welcome, resumed);
                Some(Ok(ws))
            }
            Ok(Ok(ResumeAnswer::Refused(error))) if error.code == ErrorCode::ResumeFailed => {
                // The connection carries on as the session its welcome named.
                self.reset(welcome, Some(error));
                Some(Ok(ws))
            }
            Ok(Ok(ResumeAnswer::Refused(error))) => Some(Err(ClientError::Refused(error))),
        }
    }

    /// The session is back: rooms replayed keep their positions (the missed frames follow),
    /// rooms with a snapshot get theirs from the `joined` that follows, the others are lost.
    fn resumed(&mut self, welcome: WelcomeFrame, resumed: ResumedFrame) {
        let mut recovered = Vec::new();
        let mut snapshot = Vec::new();
        for room in &resumed.rooms {
            if room.recovered {
                if let Some(position) = self.rooms.get_mut(&room.room) {
                    position.epoch.clone_from(&room.epoch);
                }
                recovered.push(room.room.clone());
            } else {
                snapshot.push(room.room.clone());
            }
        }
        let lost: Vec<String> = self
            .rooms
            .keys()
            .filter(|name| !resumed.rooms.iter().any(|room| &room.room == *name))
            .cloned()
            .collect();
        for name in &lost {
            self.rooms.remove(name);
        }
        // The connection's own new session was discarded: the welcome names the resumed one.
        self.adopt(WelcomeFrame {
            session: resumed.session,
            resume_token: self.token.clone(),
            ..welcome
        });
        self.emit(Event::Resumed(ResumedEvent {
            session: resumed.session,
            recovered,
            snapshot,
            lost,
        }));
    }

    /// The old session is gone: this connection's fresh one replaces it, in no room.
    fn reset(&mut self, welcome: WelcomeFrame, refusal: Option<ErrorFrame>) {
        let previous = self.welcome.session;
        let lost = std::mem::take(&mut self.rooms).into_keys().collect();
        self.token.clone_from(&welcome.resume_token);
        let session = welcome.session;
        self.adopt(welcome);
        self.emit(Event::Reset(ResetEvent {
            session,
            previous,
            lost,
            refusal,
        }));
    }

    fn adopt(&mut self, welcome: WelcomeFrame) {
        let shared = Arc::new(welcome.clone());
        self.welcome = welcome;
        self.status.send_modify(|status| status.welcome = shared);
    }

    /// The session is back: the lobby subscription is made again, then the requests that
    /// waited go out in the order they were made.
    fn reopened(&mut self) {
        self.set_state(ConnectionState::Open);
        if let Some(filter) = self.lobby.clone() {
            let subscribe = ClientFrame::SubscribeLobby {
                reference: None,
                filter,
            };
            self.transmit(subscribe, None);
        }
        while let Some((frame, reply)) = self.queued.pop_front() {
            self.transmit(frame, Some(reply));
        }
    }

    /// The client is closed for good: every request settles, and `Event::Closed` is the last
    /// event.
    fn finish(&mut self, frame: Option<CloseFrame>, error: Option<Arc<ClientError>>) {
        self.fail_pending();
        for (_, reply) in self.queued.drain(..) {
            let _ = reply.send(Err(ClientError::Closed(frame.clone())));
        }
        let close = CloseInfo::from_frame(frame.as_ref());
        self.status.send_modify(|status| {
            status.state = ConnectionState::Closed;
            status.close = frame;
        });
        self.emit(Event::Closed(ClosedEvent { close, error }));
    }
}

/// Messages waiting to be written on the current connection, each with the `ref` of the
/// request it carries.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<(Option<Ref>, Message)>,
    /// Messages handed to the sink and not flushed yet.
    unflushed: bool,
}

impl Outbox {
    fn push(&mut self, reference: Option<Ref>, message: Message) {
        self.queue.push_back((reference, message));
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.unflushed
    }

    /// Writes and flushes everything queued. Cancel-safe, so it can race reading in a
    /// `select!`: a message leaves the queue only when the sink takes it, and what the sink
    /// took is flushed by the next call.
    async fn flush(&mut self, sink: &mut SplitSink<Ws, Message>) -> Result<(), tungstenite::Error> {
        poll_fn(|cx| {
            while !self.queue.is_empty() {
                ready!(sink.poll_ready_unpin(cx))?;
                if let Some((_, message)) = self.queue.pop_front() {
                    sink.start_send_unpin(message)?;
                    self.unflushed = true;
                }
            }
            ready!(sink.poll_flush_unpin(cx))?;
            self.unflushed = false;
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Empties the outbox of a connection that ended; the refs of the requests never sent.
    fn clear(&mut self) -> Vec<Ref> {
        self.unflushed = false;
        self.queue
            .drain(..)
            .filter_map(|(reference, _)| reference)
            .collect()
    }
}

/// Reads until the answer to the `resume` with `reference`. Nothing else comes before it on a
/// new connection (PROTOCOL.md section 5); anything that does is not this session's.
async fn resume_answer(ws: &mut Ws, reference: Ref) -> Result<ResumeAnswer> {
    loop {
        match transport::read_frame(ws).await? {
            ServerFrame::Resumed(resumed) if resumed.reference == Some(reference) => {
                return Ok(ResumeAnswer::Resumed(resumed))
            }
            ServerFrame::Error(error) if error.reference == Some(reference) => {
                return Ok(ResumeAnswer::Refused(error))
            }
            _ => {}
        }
    }
}

/// The close frame the client sends when the application closes it.
fn client_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "closed by the client".into(),
    }
}
