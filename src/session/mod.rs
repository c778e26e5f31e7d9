//! The session actor: one per WebSocket connection. It reads the client's messages (through
//! `reader`, bounded and backpressured), enforces the session's rate limits, answers what it
//! can alone (decode errors, pings), forwards requests to the registry as typed messages,
//! writes what the registry sends it, keeps the heartbeat, and reports how the connection
//! ended. A `resume` changes which session the connection is.

mod batch;
mod heartbeat;
mod rate;
pub mod reader;
pub mod ywebsocket;

pub use self::rate::quota as rate_quota;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Handler, StreamHandler, WrapFuture,
};
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError, WebsocketContext};
use bytes::Bytes;
use futures_util::StreamExt;
use parlor_protocol::{
    close, decode_client, encode_server, ClientFrame, ErrorCode, ErrorFrame, LeaveReason, Limits,
    Ref, ServerFrame, SessionId, WelcomeFrame, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use self::batch::{Push, WriteBatch};
use self::heartbeat::{Beat, Heartbeat};
use self::rate::{RateLimits, RateVerdict, SessionRates};
use self::reader::{Input, Message as Incoming, SocketReader};
use crate::config::Config;
use crate::engine::{ClientRequest, Connect, Disconnect, RegistryHandle, Resume};
use crate::metrics::{Metrics, ResumeOutcome};
use crate::outbox::{encoded_len, Outbound, OutboundBudget, Outgoing, SessionOutlet};
use crate::registry::{Close, Profile, RequestError};

/// After the server sends its close frame, it waits this long for the client's (reading and
/// dropping anything else the client sends) before it ends the connection: closing TCP with
/// unread input would reset the connection and could destroy the close frame on its way.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection's input, as the upgrade hands it over.
pub type ClientInput = SocketReader<actix_web::web::Payload>;

/// Settings every session shares, computed once from the configuration.
#[derive(Debug)]
pub struct SessionSettings {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub max_frame_bytes: usize,
    pub max_depth: usize,
    pub reconnect_grace: Duration,
    /// How long room frames may be held to be written together (`session.write_delay_ms`).
    pub write_delay: Duration,
    pub rates: RateLimits,
    pub limits: Limits,
}

impl SessionSettings {
    pub fn from_config(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            heartbeat_interval: config.heartbeat_interval(),
            client_timeout: config.client_timeout(),
            max_frame_bytes: l.max_frame_bytes,
            max_depth: l.max_depth,
            reconnect_grace: config.reconnect_grace(),
            write_delay: config.write_delay(),
            rates: RateLimits::from_config(&config.rate_limits),
            limits: Limits {
                max_frame_bytes: l.max_frame_bytes as u64,
                max_rooms_per_session: l.max_rooms_per_session as u64,
                max_members_per_room: l.max_members_per_room as u64,
                max_room_name_bytes: l.max_room_name_bytes as u64,
                max_event_name_bytes: l.max_event_name_bytes as u64,
                max_depth: l.max_depth as u64,
                outbound_budget_bytes: config.session.outbound_budget_bytes as u64,
                max_state_bytes: l.max_state_bytes as u64,
                max_state_values: l.max_state_values as u64,
                max_metadata_bytes: l.max_metadata_bytes as u64,
                frames_per_second: u64::from(config.rate_limits.frames_per_second),
                bytes_per_second: u64::from(config.rate_limits.bytes_per_second),
            },
        }
    }
}

pub struct Session {
    /// The session this connection is; changes when a `resume` succeeds.
    id: SessionId,
    /// The id this connection started with, which names it to the registry for good.
    connection: SessionId,
    /// Who connected: the resume token of the session it started as, the user, its rooms.
    profile: Profile,
    registry: RegistryHandle,
    budget: Arc<OutboundBudget>,
    settings: Arc<SessionSettings>,
    metrics: Arc<Metrics>,
    rates: SessionRates,
    heartbeat: Heartbeat,
    /// The client's messages, until `started` hands them to the actor's context.
    input: Option<ClientInput>,
    /// Whether the connection has sent a message yet: only its first may be a `resume`.
    requested: bool,
    /// How the session ended, once known.
    end: Option<LeaveReason>,
    /// Whether the registry has been told the connection ended.
    reported: bool,
    /// A y-websocket connection to one document (`/yjs/{document}`); `None`: Parlor's frames.
    yjs: Option<ywebsocket::YWebsocket>,
    /// Room frames held to be written together (none unless `session.write_delay_ms` is set).
    batch: WriteBatch,
}

/// Everything a new session needs from the node.
pub struct SessionContext {
    pub registry: RegistryHandle,
    pub settings: Arc<SessionSettings>,
    pub metrics: Arc<Metrics>,
}

impl Session {
    pub fn new(
        node: &SessionContext,
        budget: Arc<OutboundBudget>,
        user: Option<String>,
        rooms: Option<crate::registry::RoomPatterns>,
        input: ClientInput,
    ) -> Self {
        let now = Instant::now();
        let id = SessionId::new_random();
        let settings = &node.settings;
        Self {
            id,
            connection: id,
            profile: Profile {
                resume_token: new_resume_token(),
                user,
                rooms,
                node: None,
            },
            registry: node.registry.clone(),
            budget,
            rates: SessionRates::new(&settings.rates),
            heartbeat: Heartbeat::new(now, settings.heartbeat_interval, settings.client_timeout),
            settings: Arc::clone(settings),
            metrics: Arc::clone(&node.metrics),
            input: Some(input),
            requested: false,
            end: None,
            reported: false,
            yjs: None,
            batch: WriteBatch::new(settings.write_delay),
        }
    }

    /// The connection speaks y-websocket for document (room) `document`.
    pub fn for_document(mut self, document: String) -> Self {
        self.yjs = Some(ywebsocket::YWebsocket::new(document));
        self
    }

    /// Hands a request to the registry; a stopped registry ends the session.
    fn submit(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        frame: ClientFrame,
        place: Option<OwnedSemaphorePermit>,
    ) {
        let request = ClientRequest {
            session: self.id,
            connection: self.connection,
            frame,
        };
        if self.registry.submit(request, place).is_err() {
            self.end(
                ctx,
                LeaveReason::Kicked,
                close::INTERNAL_ERROR,
                "registry stopped",
            );
        }
    }

    /// Writes the room frames held for a later write, in order.
    fn flush_held(&mut self, ctx: &mut WebsocketContext<Self>) {
        for frame in self.batch.take() {
            ctx.write_raw(ws::Message::Binary(frame));
        }
    }

    /// Writes a message the session itself produced, charging its encoded size to the budget;
    /// the frames held before it go first.
    fn write(&mut self, ctx: &mut WebsocketContext<Self>, message: ws::Message) {
        self.flush_held(ctx);
        let payload = match &message {
            ws::Message::Binary(b) | ws::Message::Ping(b) | ws::Message::Pong(b) => b.len(),
            ws::Message::Close(Some(reason)) => {
                2 + reason.description.as_ref().map_or(0, |d| d.len())
            }
            _ => 0,
        };
        self.budget.charge(encoded_len(payload));
        self.metrics.sent(1, payload);
        ctx.write_raw(message);
    }

    fn write_frame(&mut self, ctx: &mut WebsocketContext<Self>, frame: &ServerFrame) {
        self.write(ctx, ws::Message::Binary(encode_server(frame)));
    }

    fn write_error(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        reference: Option<Ref>,
        code: ErrorCode,
        message: String,
    ) {
        self.metrics.error(code);
        self.write_frame(
            ctx,
            &ServerFrame::Error(ErrorFrame {
                reference,
                code,
                message,
                reason: None,
            }),
        );
    }

    /// Ends the session: records why, tells the registry, and sends a close frame with
    /// `code`. The connection then lasts until the client answers with its own close, its
    /// input ends, or `CLOSE_HANDSHAKE_TIMEOUT` passes, reading and dropping what it sends.
    fn end(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        reason: LeaveReason,
        code: u16,
        text: &str,
    ) {
        if self.end.is_some() {
            return;
        }
        self.end = Some(reason);
        self.report_end();
        let description = (!text.is_empty()).then(|| text.to_owned());
        self.write(
            ctx,
            ws::Message::Close(Some(CloseReason {
                code: CloseCode::from(code),
                description,
            })),
        );
        ctx.run_later(CLOSE_HANDSHAKE_TIMEOUT, |_, ctx| ctx.stop());
    }

    /// Tells the registry, once, that this connection has ended and why.
    fn report_end(&mut self) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let reason = self.end.unwrap_or(LeaveReason::Dropped);
        tracing::debug!(session = %self.id, ?reason, "session ended");
        self.registry.disconnect(Disconnect {
            session: self.id,
            connection: self.connection,
            reason,
        });
    }

    fn on_binary(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        bytes: &[u8],
        place: Option<OwnedSemaphorePermit>,
    ) {
        self.metrics.frames_in.inc();
        self.metrics.bytes_in.inc_by(bytes.len() as u64);
        let verdict = self.rates.check(bytes.len());
        if let Some(yjs) = &mut self.yjs {
            // A y-websocket message: an emit to the document, whatever it holds (the room's
            // logic reads it). Over a rate limit it is dropped; y-websocket resyncs.
            let frame = yjs.inbound(bytes);
            if let RateVerdict::Refuse(limit) = verdict {
                // y-websocket has no errors, and a dropped update would leave its document
                // behind for good: the connection closes instead, and the provider reconnects
                // and syncs again, losing nothing.
                self.metrics.rate_limited(limit);
                return self.end(
                    ctx,
                    LeaveReason::RateLimited,
                    close::POLICY_VIOLATION,
                    "rate_limited",
                );
            }
            if self.obey(ctx, verdict, None) {
                match frame {
                    Ok(Some(frame)) => self.submit(ctx, frame, place),
                    Ok(None) => {}
                    Err(why) => self.end(
                        ctx,
                        LeaveReason::ProtocolError,
                        close::POLICY_VIOLATION,
                        &why,
                    ),
                }
            }
            return;
        }
        let decoded = decode_client(bytes, self.settings.max_depth);
        // The frame is read before the verdict only to name its `ref` in the refusal.
        let reference = match &decoded {
            Ok(frame) => frame.reference(),
            Err(err) => err.reference,
        };
        if !self.obey(ctx, verdict, reference) {
            return;
        }
        let first = !std::mem::replace(&mut self.requested, true);
        let frame = match decoded {
            Ok(frame) => frame,
            Err(err) => return self.write_error(ctx, err.reference, err.code, err.message),
        };
        if let ClientFrame::Resume {
            session,
            token,
            rooms,
            ..
        } = frame
        {
            if !first {
                // Else one connection could try token after token, unslowed by the limit on
                // new connections.
                self.metrics.resume(ResumeOutcome::Refused);
                let err =
                    RequestError::ResumeFailed("resume must be the connection's first message");
                return self.write_error(ctx, reference, err.code(), err.to_string());
            }
            return self.resume(ctx, session, token, rooms, reference, place);
        }
        self.submit(ctx, frame, place);
    }

    /// Carries out a rate verdict on an incoming message: true if the message may be handled,
    /// false if it was refused (`rate_limited`) or the session closed for sustained abuse.
    fn obey(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        verdict: RateVerdict,
        reference: Option<Ref>,
    ) -> bool {
        match verdict {
            RateVerdict::Pass => true,
            RateVerdict::Refuse(limit) => {
                self.metrics.rate_limited(limit);
                self.write_error(
                    ctx,
                    reference,
                    ErrorCode::RateLimited,
                    format!("over the {limit:?} rate limit; the frame was dropped").to_lowercase(),
                );
                false
            }
            RateVerdict::Close(limit) => {
                self.metrics.rate_limited(limit);
                self.metrics.rate_limit_closes.inc();
                self.end(
                    ctx,
                    LeaveReason::RateLimited,
                    close::POLICY_VIOLATION,
                    "rate_limited",
                );
                false
            }
        }
    }

    /// A text message: refused, and counted against the rate limits like any other.
    fn on_text(&mut self, ctx: &mut WebsocketContext<Self>, len: usize) {
        self.metrics.frames_in.inc();
        self.metrics.bytes_in.inc_by(len as u64);
        let verdict = self.rates.check(len);
        if self.obey(ctx, verdict, None) {
            self.write_error(
                ctx,
                None,
                ErrorCode::TextFrame,
                "text messages are not accepted; send MessagePack in binary messages".into(),
            );
        }
    }

    /// Asks the registry to make this connection session `session`. Nothing else this
    /// connection sends is handled until the answer is in, so every later request is made as
    /// the session it resumed.
    fn resume(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        session: SessionId,
        token: String,
        rooms: Vec<parlor_protocol::RoomPosition>,
        reference: Option<Ref>,
        place: Option<OwnedSemaphorePermit>,
    ) {
        let request = Resume {
            current: self.id,
            session,
            token,
            rooms,
            reference,
        };
        let registry = self.registry.clone();
        let answer = async move { registry.resume(request, place).await };
        let answer = answer
            .into_actor(self)
            .map(|answer, session, ctx| match answer {
                Some(Some(id)) => {
                    tracing::debug!(from = %session.id, to = %id, "session resumed");
                    session.id = id;
                }
                Some(None) => {}
                None => session.end(
                    ctx,
                    LeaveReason::Kicked,
                    close::INTERNAL_ERROR,
                    "registry stopped",
                ),
            });
        ctx.wait(answer);
    }

    /// Does what the heartbeat says is due, and wakes again at its next deadline.
    fn heartbeat(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.end.is_some() {
            return;
        }
        let now = Instant::now();
        loop {
            match self.heartbeat.poll(now) {
                Beat::Ping => self.write(ctx, ws::Message::Ping(Bytes::new())),
                Beat::TimedOut => {
                    tracing::debug!(session = %self.id, "heartbeat timeout");
                    return self.end(
                        ctx,
                        LeaveReason::Timeout,
                        close::HEARTBEAT_TIMEOUT,
                        "timeout",
                    );
                }
                Beat::Wait => break,
            }
        }
        let wait = self
            .heartbeat
            .next_deadline()
            .saturating_duration_since(now);
        ctx.run_later(wait, |session, ctx| session.heartbeat(ctx));
    }
}

impl Actor for Session {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(input) = self.input.take() {
            ctx.add_stream(input);
        }
        let (frames, mut queued) = mpsc::unbounded_channel::<Outgoing>();
        ctx.add_stream(futures_util::stream::poll_fn(move |cx| queued.poll_recv(cx)).map(Queued));
        let outlet =
            SessionOutlet::new(frames, ctx.address().recipient(), Arc::clone(&self.budget));
        self.registry.connect(Connect {
            session: self.id,
            outlet,
            profile: self.profile.clone(),
        });
        let welcome = WelcomeFrame {
            session: self.id,
            protocol: PROTOCOL_VERSION,
            heartbeat_ms: self.settings.heartbeat_interval.as_millis() as u64,
            timeout_ms: self.settings.client_timeout.as_millis() as u64,
            limits: self.settings.limits.clone(),
            resume_token: self.profile.resume_token.clone(),
            reconnect_grace_ms: self.settings.reconnect_grace.as_millis() as u64,
            user: self.profile.user.clone(),
        };
        match self.yjs.as_ref().map(ywebsocket::YWebsocket::create) {
            // y-websocket has no welcome: the session goes into the document's room at once.
            Some(create) => self.submit(ctx, create, None),
            None => self.write_frame(ctx, &ServerFrame::Welcome(welcome)),
        }
        self.heartbeat(ctx);
        tracing::debug!(session = %self.id, "session started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.report_end();
    }
}

/// `WebsocketContext` insists on reading the input itself; the session reads it through
/// `SocketReader` instead and gives the context a stream that never yields.
impl StreamHandler<Result<ws::Message, ProtocolError>> for Session {
    fn handle(&mut self, _: Result<ws::Message, ProtocolError>, _: &mut Self::Context) {}
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamHandler<Input> for Session {
    fn handle(&mut self, input: Input, ctx: &mut Self::Context) {
        self.heartbeat.heard(Instant::now());
        if self.end.is_some() {
            // Closing: only the client's close matters now, which completes the handshake.
            if matches!(input, Input::Message(Incoming::Close(_), _)) {
                ctx.stop();
            }
            return;
        }
        match input {
            Input::Message(Incoming::Binary(bytes), place) => self.on_binary(ctx, &bytes, place),
            Input::Message(Incoming::Text(len), _) => self.on_text(ctx, len),
            Input::Message(Incoming::Ping(payload), _) => {
                self.write(ctx, ws::Message::Pong(payload))
            }
            Input::Message(Incoming::Pong, _) => {}
            Input::Message(Incoming::Close(_), _) => {
                self.end(ctx, LeaveReason::Closed, close::NORMAL, "");
                // The client started the handshake, and this close completes it.
                ctx.stop();
            }
            Input::Failed(err) => {
                tracing::debug!(session = %self.id, %err, "invalid WebSocket input");
                self.end(
                    ctx,
                    LeaveReason::ProtocolError,
                    err.close_code(),
                    &err.to_string(),
                );
            }
        }
    }

    /// The client's input ended (or failed): a connection not already closing was dropped.
    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.end.is_none() {
            self.end = Some(LeaveReason::Dropped);
        }
        ctx.stop();
    }
}

/// What the registry queued for this session: a frame (already charged to its budget) or an
/// ordered close.
pub struct Queued(Outgoing);

impl StreamHandler<Queued> for Session {
    fn handle(&mut self, Queued(item): Queued, ctx: &mut Self::Context) {
        match item {
            // Nothing follows a close frame.
            Outgoing::Frame(_) if self.end.is_some() => {}
            Outgoing::Frame(frame) => match &mut self.yjs {
                None => match self.batch.push(frame) {
                    Push::WriteNow(frame) => ctx.write_raw(ws::Message::Binary(frame)),
                    Push::Held => {}
                    Push::HeldFlushIn(delay) => {
                        ctx.run_later(delay, |session, ctx| session.flush_held(ctx));
                    }
                },
                Some(yjs) => {
                    // The frame was charged to the budget as it came; what goes on the wire
                    // instead is charged, and the frame credited.
                    let outbound = yjs.outbound(&frame);
                    self.budget.credit(encoded_len(frame.len()));
                    match outbound {
                        ywebsocket::Outbound::Write(messages) => {
                            for bytes in messages {
                                self.budget.charge(encoded_len(bytes.len()));
                                ctx.write_raw(ws::Message::Binary(bytes));
                            }
                        }
                        ywebsocket::Outbound::Join(join) => self.submit(ctx, join, None),
                        ywebsocket::Outbound::Release(held) => {
                            for frame in held {
                                self.submit(ctx, frame, None);
                            }
                        }
                        ywebsocket::Outbound::Close(why) => {
                            self.end(ctx, LeaveReason::Kicked, close::POLICY_VIOLATION, &why)
                        }
                        ywebsocket::Outbound::Drop => {}
                    }
                }
            },
            Outgoing::Close(why) => self.close_for(ctx, why),
        }
    }

    /// The registry dropped every sender: the session was removed, and the registry says why
    /// through `Outbound::Close` (or the session is already ending). Nothing to do here.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<Outbound> for Session {
    type Result = ();

    fn handle(&mut self, message: Outbound, ctx: &mut Self::Context) {
        let Outbound::Close(why) = message;
        self.close_for(ctx, why);
    }
}

impl Session {
    /// Ends the session as the registry asked, with the close code that says why.
    fn close_for(&mut self, ctx: &mut WebsocketContext<Self>, why: Close) {
        match why {
            Close::Evicted(LeaveReason::SlowConsumer) => self.end(
                ctx,
                LeaveReason::SlowConsumer,
                close::POLICY_VIOLATION,
                "slow_consumer",
            ),
            Close::Evicted(reason) => self.end(ctx, reason, close::KICKED, "kicked"),
            Close::Replaced => self.end(ctx, LeaveReason::Closed, close::REPLACED, "replaced"),
            // Ended as dropped: away if the node lives on, quietly removed if it stops.
            Close::ShuttingDown => {
                self.end(ctx, LeaveReason::Dropped, close::GOING_AWAY, "going away")
            }
        }
    }
}

/// A new resume token: 256 bits from the operating system's generator (two v4 UUIDs' worth of
/// randomness, 244 bits of it random), as 64 hex characters.
fn new_resume_token() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!("{}{}", a.simple(), b.simple())
}
