//! `ClusterActor`: a node's registry when rooms live in Redis. It keeps what is the node's own
//! (its sessions, their connections and outlets, which of its sessions are in which room) and
//! asks Redis, through the functions in `parlor.lua`, for everything about rooms: each join,
//! leave, emit or state write is one atomic call that checks, changes the room and appends the
//! frames it makes to the room's stream and channel. Frames come back from the channels of the
//! rooms the node has members in and go to them through `LocalRooms`.
//!
//! It answers the same messages as the single-node `RegistryActor`, so sessions and the HTTP
//! handlers do not know which one they talk to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, MessageResult, ResponseActFuture,
    StreamHandler, WrapFuture,
};
use bytes::Bytes;
use parlor_protocol::{
    encode_server, ClientFrame, DirectFrame, Document, EventFrame, LeaveReason, Metadata, Ref,
    ResumedFrame, ResumedRoom, RoomFilter, RoomInfo, RoomOptions, ServerFrame, SessionId, StateOp,
    StatePatch, StatePatchFrame, Value,
};
use redis::Value as Reply;
use tokio::sync::mpsc;

use super::fanout::{Fill, LocalRooms};
use super::link::{Link, LinkConfig, LinkError, LinkEvent, Replied, REPLY_QUEUE};
use super::wire::{self, Answer, InboxMessage, Snapshot};
use crate::engine::{
    handle_inbound, AllRooms, ClientRequest, ClusterHealth, Connect, Disconnect, GetStats, Inbound,
    KickSession, ListRooms, Publish, ReadRoom, RegistryStats, Resume, ShutDown,
};
use crate::metrics::{Metrics, ResumeOutcome};
use crate::outbox::SessionOutlet;
use crate::registry::{
    graces_over, new_room_id, Close, Listing, Lobby, Outlet, Profile, RegistryLimits, RequestError,
    RoomDetail, RoomRules, BACKEND, DEFAULT_LISTED_ROOMS,
};

mod backend;
mod listing;
mod requests;
mod resume;
mod state;

/// Events from the link waiting for the actor; beyond this, channel messages are dropped and
/// read back from the rooms' streams.
const EVENT_QUEUE: usize = 8192;
/// Sessions of a dead node removed per call, so that no one call holds Redis for long.
const PURGE_BATCH: usize = 500;
/// Times a batch of state writes is tried again after losing a race with another node.
const STATE_ATTEMPTS: usize = 64;
/// State writes to one room sent in one batch at most.
const WRITE_BATCH: usize = 64;

/// How a cluster node is set up.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub link: LinkConfig,
    /// A node whose heartbeat is older than this is dead; the others remove its members.
    pub node_ttl: Duration,
    pub limits: RegistryLimits,
    pub lobby_interval: Duration,
    pub clock_interval: Duration,
}

/// Frames handed to local outlets: how many, how many bytes, and who overflowed.
#[derive(Default)]
struct Handout {
    sent: u64,
    bytes: u64,
    overflowed: Vec<SessionId>,
}

impl Handout {
    fn give(&mut self, id: SessionId, outlet: &SessionOutlet, frame: &Bytes) {
        if outlet.deliver(frame.clone()).is_ok() {
            self.sent += 1;
            self.bytes += frame.len() as u64;
        } else {
            self.overflowed.push(id);
        }
    }
}

/// What a call does with its reply.
type Pending =
    Box<dyn FnOnce(&mut ClusterActor, &mut Context<ClusterActor>, Result<Reply, LinkError>)>;

struct LocalSession {
    /// `None` while the session is away.
    outlet: Option<SessionOutlet>,
    connection: SessionId,
    profile: Profile,
    /// The rooms it is in, in the order it joined them.
    rooms: Vec<String>,
    /// Joins asked of Redis and not answered yet (they count against the room limit).
    joining: usize,
    away_since: Option<Instant>,
}

pub struct ClusterActor {
    settings: Arc<ClusterSettings>,
    link: Option<Link>,
    sessions: HashMap<SessionId, LocalSession>,
    rooms: LocalRooms<SessionOutlet>,
    /// The last state and version this node saw of each local room: where state writes start.
    states: HashMap<String, (Document, u64)>,
    /// State writes waiting, per room.
    writes: HashMap<String, state::RoomWrites>,
    away: HashSet<SessionId>,
    lobby: Lobby,
    commands_up: bool,
    subscriptions_up: bool,
    /// Redis knew this node at its last heartbeat.
    registered: bool,
    /// Since when Redis has been reachable without a break.
    up_since: Option<Instant>,
    /// What to do with each call's reply, by token; at most the link's queues' worth.
    pending: HashMap<u64, Pending>,
    next_token: u64,
    closing: bool,
    metrics: Arc<Metrics>,
}

impl ClusterActor {
    pub fn new(settings: ClusterSettings, metrics: Arc<Metrics>) -> Self {
        let lobby = Lobby::new(settings.limits.lobby_frame_bytes);
        Self {
            settings: Arc::new(settings),
            link: None,
            sessions: HashMap::new(),
            rooms: LocalRooms::default(),
            states: HashMap::new(),
            writes: HashMap::new(),
            away: HashSet::new(),
            lobby,
            commands_up: false,
            subscriptions_up: false,
            registered: false,
            up_since: None,
            pending: HashMap::new(),
            next_token: 0,
            closing: false,
            metrics,
        }
    }

    fn limits(&self) -> &RegistryLimits {
        &self.settings.limits
    }

    fn is_up(&self) -> bool {
        self.commands_up && self.subscriptions_up
    }

    /// `FCALL name 0 prefix history node`, for the caller to add its own arguments.
    fn function(&self, name: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(name)
            .arg(0)
            .arg(&self.settings.link.prefix)
            .arg(self.limits().history_frames)
            .arg(&self.settings.link.node);
        cmd
    }

    /// Sends `cmd` now and runs `then` with the reply, on this actor. Refused at once (Redis
    /// down, queue full): `then` runs now, with the refusal.
    fn run(
        &mut self,
        ctx: &mut Context<Self>,
        cmd: redis::Cmd,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Result<Reply, LinkError>) + 'static,
    ) {
        let Some(link) = &self.link else {
            return then(self, ctx, Err(LinkError::Down));
        };
        let token = self.next_token;
        self.next_token += 1;
        match link.call_with_token(cmd, token) {
            Ok(()) => {
                self.pending.insert(token, Box::new(then));
            }
            Err(err) => then(self, ctx, Err(err)),
        }
    }

    /// Like `run`, for the functions answering `{'ok'...}`, `{'err'...}`: `then` gets the
    /// `ok` rest, or the refusal to send (unreachable Redis and unreadable answers included).
    fn run_request(
        &mut self,
        ctx: &mut Context<Self>,
        cmd: redis::Cmd,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Result<Vec<Reply>, RequestError>) + 'static,
    ) {
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let result = match reply.map(wire::answer) {
                Ok(Ok(Answer::Ok(rest))) => Ok(rest),
                Ok(Ok(Answer::Refused(err))) => Err(err),
                // Redis ran the call, so whatever it did stands; the answer does not say what.
                Ok(Ok(Answer::Conflict { .. } | Answer::Gone(_))) => Err(
                    RequestError::OutcomeUnknown("an answer this request does not take".into()),
                ),
                Ok(Err(err)) => {
                    tracing::error!("cluster: {err}");
                    Err(RequestError::OutcomeUnknown(err.to_string()))
                }
                Err(err) => Err(RequestError::from(err)),
            };
            then(actor, ctx, result);
        });
    }

    /// Runs a request's call and answers the session: `ok`, or the refusal.
    fn run_and_answer(
        &mut self,
        ctx: &mut Context<Self>,
        cmd: redis::Cmd,
        id: SessionId,
        reference: Option<Ref>,
    ) {
        self.run_request(ctx, cmd, move |actor, ctx, result| {
            actor.answer(ctx, id, reference, result.map(drop));
        });
    }

    // ---- delivering to this node's sessions ------------------------------------------------

    fn deliver(&mut self, ctx: &mut Context<Self>, id: SessionId, frame: Bytes) {
        let Some(outlet) = self.sessions.get(&id).and_then(|s| s.outlet.as_ref()) else {
            return;
        };
        let len = frame.len();
        if outlet.deliver(frame).is_ok() {
            self.metrics.sent(1, len);
        } else {
            self.evict(ctx, id);
        }
    }

    fn send_to(&mut self, ctx: &mut Context<Self>, id: SessionId, frame: &ServerFrame) {
        self.deliver(ctx, id, encode_server(frame));
    }

    fn send_ok(&mut self, ctx: &mut Context<Self>, id: SessionId, reference: Option<Ref>) {
        if let Some(reference) = reference {
            self.send_to(ctx, id, &ServerFrame::Ok { reference });
        }
    }

    fn send_error(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        reference: Option<Ref>,
        err: &RequestError,
    ) {
        self.metrics.error(err.code());
        self.send_to(
            ctx,
            id,
            &ServerFrame::Error(parlor_protocol::ErrorFrame {
                reference,
                code: err.code(),
                message: err.to_string(),
            }),
        );
    }

    fn answer(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        reference: Option<Ref>,
        result: Result<(), RequestError>,
    ) {
        match result {
            Ok(()) => self.send_ok(ctx, id, reference),
            Err(err) => self.send_error(ctx, id, reference, &err),
        }
    }

    /// Counts what a `Handout` delivered and evicts the sessions that overflowed.
    fn settle(&mut self, ctx: &mut Context<Self>, handout: Handout) {
        self.metrics.sent_total(handout.sent, handout.bytes);
        for id in handout.overflowed {
            self.evict(ctx, id);
        }
    }

    /// Hands a batch of frames to their local recipients, then evicts the ones who overflowed.
    fn deliver_all(&mut self, ctx: &mut Context<Self>, deliveries: Vec<(SessionId, Bytes)>) {
        let mut overflowed = Vec::new();
        let mut sent = 0u64;
        let mut bytes = 0u64;
        for (id, frame) in deliveries {
            let Some(outlet) = self.sessions.get(&id).and_then(|s| s.outlet.as_ref()) else {
                continue;
            };
            let len = frame.len();
            if outlet.deliver(frame).is_ok() {
                sent += 1;
                bytes += len as u64;
            } else {
                overflowed.push(id);
            }
        }
        self.metrics.sent_total(sent, bytes);
        for id in overflowed {
            self.evict(ctx, id);
        }
    }

    /// A session overran its outbound budget: it leaves every room and its connection closes.
    fn evict(&mut self, ctx: &mut Context<Self>, id: SessionId) {
        if let Some(session) = self.forget(id) {
            self.metrics.slow_consumer_evictions.inc();
            if let Some(outlet) = &session.outlet {
                outlet.close(Close::Evicted(LeaveReason::SlowConsumer));
            }
            self.remove_in_redis(ctx, id, &session, LeaveReason::SlowConsumer, false);
        }
    }

    /// Takes a session off this node: out of its local rooms (unsubscribing from the rooms
    /// left without a local member) and the lobby.
    fn forget(&mut self, id: SessionId) -> Option<LocalSession> {
        let session = self.sessions.remove(&id)?;
        self.away.remove(&id);
        self.unsubscribe_lobby(id);
        for room in &session.rooms {
            self.leave_locally(room, id);
        }
        Some(session)
    }

    fn leave_locally(&mut self, room: &str, id: SessionId) {
        if self.rooms.remove_member(room, id) {
            self.states.remove(room);
            if let Some(link) = &self.link {
                link.unsubscribe(self.settings.link.room_channel(room));
            }
        }
    }

    fn remove_in_redis(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        session: &LocalSession,
        reason: LeaveReason,
        only_if_away: bool,
    ) {
        if session.rooms.is_empty() {
            return;
        }
        let mut cmd = self.function("parlor_remove");
        cmd.arg(id.to_string())
            .arg(reason.as_str())
            .arg(if only_if_away { "1" } else { "0" });
        self.run(ctx, cmd, |_, _, reply| {
            if let Err(err) = reply {
                // The heartbeat stops with the node; if Redis is only cut off, the session is
                // checked again when it comes back.
                tracing::debug!("cluster: could not remove a session: {err}");
            }
        });
    }

    // ---- frames from Redis -----------------------------------------------------------------

    fn on_room_frame(&mut self, ctx: &mut Context<Self>, room: String, payload: Bytes) {
        let Some(message) = wire::parse_room_message(&payload) else {
            tracing::error!("cluster: unreadable frame on room {room:?}");
            return;
        };
        let mut handout = Handout::default();
        let fill = self.rooms.on_frame(
            &room,
            message,
            &mut |id, outlet: &SessionOutlet, frame: &Bytes| handout.give(id, outlet, frame),
        );
        self.metrics.fanout.observe(handout.sent as f64);
        self.settle(ctx, handout);
        if let Some(fill) = fill {
            self.fill(ctx, fill);
        }
    }

    /// Reads a room's missing frames from its stream.
    fn fill(&mut self, ctx: &mut Context<Self>, fill: Fill) {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.settings.link.stream_key(&fill.room))
            .arg(wire::stream_id(fill.from));
        match fill.to {
            Some(to) if to > 0 => cmd.arg(wire::stream_id(to - 1)),
            _ => cmd.arg("+"),
        };
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let messages = match reply.map(wire::parse_stream) {
                Ok(Ok(messages)) => messages,
                Ok(Err(err)) => {
                    tracing::error!("cluster: {err}");
                    Vec::new()
                }
                Err(_) => {
                    actor.rooms.fill_failed(&fill.room);
                    return;
                }
            };
            let mut handout = Handout::default();
            let lost_before = actor.rooms.lost;
            let more = actor.rooms.on_fill(
                &fill,
                messages,
                &mut |id, outlet: &SessionOutlet, frame: &Bytes| handout.give(id, outlet, frame),
            );
            actor.note_lost(lost_before);
            actor.settle(ctx, handout);
            if let Some(more) = more {
                actor.fill(ctx, more);
            }
        });
    }

    fn note_lost(&self, before: u64) {
        let lost = self.rooms.lost.saturating_sub(before);
        if lost > 0 {
            self.metrics.cluster_frames_lost.inc_by(lost);
            tracing::warn!(
                "cluster: {lost} frames were gone from Redis before this node read them"
            );
        }
    }

    fn on_inbox(&mut self, ctx: &mut Context<Self>, payload: Bytes) {
        match wire::parse_inbox(&payload) {
            Some(InboxMessage::Direct { to, frame }) => self.deliver(ctx, to, frame),
            Some(InboxMessage::ResumedElsewhere(id)) => {
                if let Some(session) = self.forget(id) {
                    if let Some(outlet) = session.outlet {
                        outlet.close(Close::Replaced);
                    }
                }
            }
            Some(InboxMessage::Kicked(id)) => {
                if let Some(session) = self.forget(id) {
                    if let Some(outlet) = session.outlet {
                        outlet.close(Close::Evicted(LeaveReason::Kicked));
                    }
                }
            }
            Some(InboxMessage::LeftRoom {
                session,
                room,
                reason,
            }) => {
                let Some(entry) = self.sessions.get_mut(&session) else {
                    return;
                };
                let before = entry.rooms.len();
                entry.rooms.retain(|r| *r != room);
                if entry.rooms.len() < before {
                    self.leave_locally(&room, session);
                    self.send_to(ctx, session, &ServerFrame::Left { room, reason });
                }
            }
            None => tracing::error!("cluster: unreadable inbox message"),
        }
    }

    // ---- link state, heartbeat, dead nodes -------------------------------------------------

    fn on_link_change(&mut self, ctx: &mut Context<Self>, was_up: bool) {
        let up = self.is_up();
        self.metrics.cluster_up.set(i64::from(up));
        if !up {
            self.up_since = None;
        }
        if up && !was_up {
            self.up_since = Some(Instant::now());
            tracing::info!("cluster: connected to Redis; catching up");
            self.beat(ctx);
            self.resync(ctx);
        }
    }

    /// After an outage: memberships Redis no longer has are dropped here (their sessions are
    /// told `left`, reason `node_lost`), and every room reads what it missed.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let pairs: Vec<(SessionId, String)> = self
            .sessions
            .iter()
            .flat_map(|(id, s)| s.rooms.iter().map(move |r| (*id, r.clone())))
            .collect();
        if !pairs.is_empty() {
            let mut cmd = self.function("parlor_check");
            for (id, room) in &pairs {
                cmd.arg(id.to_string()).arg(room);
            }
            self.run(ctx, cmd, |actor, ctx, reply| {
                let Ok(Reply::Array(gone)) = reply else {
                    return;
                };
                for pair in gone.chunks(2) {
                    let (Some(id), Some(room)) = (
                        pair.first().and_then(wire::text),
                        pair.get(1).and_then(wire::text),
                    ) else {
                        continue;
                    };
                    let Ok(id) = id.parse::<SessionId>() else {
                        continue;
                    };
                    actor.dropped_by_cluster(ctx, id, room);
                }
            });
        }
        for fill in self.rooms.catch_up_all() {
            self.fill(ctx, fill);
        }
    }

    /// Redis lost session `id`'s seat in `room` (this node was taken for dead while cut off).
    fn dropped_by_cluster(&mut self, ctx: &mut Context<Self>, id: SessionId, room: String) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        entry.rooms.retain(|r| *r != room);
        let away_in_nothing = entry.rooms.is_empty() && entry.away_since.is_some();
        self.leave_locally(&room, id);
        self.send_to(
            ctx,
            id,
            &ServerFrame::Left {
                room,
                reason: LeaveReason::NodeLost,
            },
        );
        if away_in_nothing {
            self.sessions.remove(&id);
            self.away.remove(&id);
        }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if !self.commands_up || self.closing {
            return;
        }
        let mut cmd = self.function("parlor_beat");
        cmd.arg(self.settings.node_ttl.as_millis() as u64);
        self.run(ctx, cmd, |actor, ctx, reply| {
            let Ok(Reply::Array(parts)) = reply else {
                return;
            };
            let known = parts.first().and_then(wire::number) == Some(1);
            if actor.registered && !known {
                tracing::warn!("cluster: this node was taken for dead while cut off from Redis");
                actor.resync(ctx);
            }
            actor.registered = true;
            // After an outage longer than node_ttl every heartbeat has expired, live nodes'
            // too: nobody is taken for dead before the others have had node_ttl to beat again.
            let settled = actor
                .up_since
                .is_some_and(|t| t.elapsed() >= actor.settings.node_ttl);
            if let (true, Some(Reply::Array(dead))) = (settled, parts.get(1)) {
                for node in dead.iter().filter_map(wire::text) {
                    if node != actor.settings.link.node {
                        actor.purge(ctx, node);
                    }
                }
            }
            if let Some(Reply::Array(expired)) = parts.get(2) {
                for id in expired.iter().filter_map(wire::text) {
                    let mut cmd = actor.function("parlor_expire");
                    cmd.arg(id);
                    actor.run(ctx, cmd, |_, _, _| {});
                }
            }
        });
    }

    /// Removes a dead node's sessions, a batch at a time.
    fn purge(&mut self, ctx: &mut Context<Self>, node: String) {
        tracing::warn!("cluster: node {node} stopped beating; removing its members");
        let mut cmd = self.function("parlor_purge");
        cmd.arg(&node).arg(PURGE_BATCH);
        self.run(ctx, cmd, move |actor, ctx, reply| {
            if let Ok(left) = reply.as_ref().map(wire::number) {
                if left.is_some_and(|n| n > 0) {
                    actor.purge(ctx, node);
                }
            }
        });
    }

    /// Away sessions past their grace leave their rooms (reason `timeout`).
    fn expire_away(&mut self, ctx: &mut Context<Self>) {
        let grace = self.limits().reconnect_grace;
        let expired = graces_over(&self.away, Instant::now(), grace, |id| {
            self.sessions.get(id).and_then(|s| s.away_since)
        });
        for id in expired {
            if let Some(session) = self.forget(id) {
                self.remove_in_redis(ctx, id, &session, LeaveReason::Timeout, true);
            }
        }
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (events, queue) = mpsc::channel(EVENT_QUEUE);
        let (replies, replied) = mpsc::channel(REPLY_QUEUE);
        match Link::start(self.settings.link.clone(), events, replies) {
            Ok(link) => self.link = Some(link),
            Err(err) => {
                tracing::error!("cluster: {err}");
                return;
            }
        }
        ctx.add_stream(tokio_stream::wrappers::ReceiverStream::new(queue));
        ctx.add_stream(tokio_stream::wrappers::ReceiverStream::new(replied));
        let beat_every = (self.settings.node_ttl / 3).min(Duration::from_secs(1));
        ctx.run_interval(beat_every, |actor, ctx| actor.beat(ctx));
        ctx.run_interval(self.settings.clock_interval, |actor, ctx| {
            actor.expire_away(ctx);
            if let Some(link) = &actor.link {
                let dropped = link.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
                actor.metrics.cluster_messages_dropped.inc_by(dropped);
            }
        });
        ctx.run_interval(self.settings.lobby_interval, |actor, ctx| {
            actor.flush_lobby(ctx);
        });
    }
}

impl StreamHandler<LinkEvent> for ClusterActor {
    fn handle(&mut self, event: LinkEvent, ctx: &mut Context<Self>) {
        match event {
            LinkEvent::Room(room, payload) => self.on_room_frame(ctx, room, payload),
            LinkEvent::Inbox(payload) => self.on_inbox(ctx, payload),
            LinkEvent::Lobby(room) => self.lobby.changed(&room),
            LinkEvent::Subscribed(room) => {
                if let Some(fill) = self.rooms.catch_up(&room) {
                    self.fill(ctx, fill);
                }
            }
            LinkEvent::Commands(up) => {
                let was = self.is_up();
                self.commands_up = up;
                self.on_link_change(ctx, was);
            }
            LinkEvent::Subscriptions(up) => {
                let was = self.is_up();
                self.subscriptions_up = up;
                self.on_link_change(ctx, was);
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<Replied> for ClusterActor {
    fn handle(&mut self, replied: Replied, ctx: &mut Context<Self>) {
        if let Some(then) = self.pending.remove(&replied.token) {
            then(self, ctx, replied.reply);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<Inbound> for ClusterActor {
    fn handle(&mut self, inbound: Inbound, ctx: &mut Context<Self>) {
        handle_inbound(self, inbound, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<Connect> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.sessions.insert(
            msg.session,
            LocalSession {
                outlet: Some(msg.outlet),
                connection: msg.session,
                profile: msg.profile,
                rooms: Vec::new(),
                joining: 0,
                away_since: None,
            },
        );
    }
}

impl Handler<Disconnect> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        let Some(session) = self.sessions.get(&msg.session) else {
            return;
        };
        if session.connection != msg.connection || session.away_since.is_some() {
            return;
        }
        let holds_seats = matches!(msg.reason, LeaveReason::Dropped | LeaveReason::Timeout)
            && !self.limits().reconnect_grace.is_zero()
            && !session.rooms.is_empty()
            && !self.closing
            && self.away.len() < self.limits().max_away_sessions;
        if !holds_seats {
            if let Some(session) = self.forget(msg.session) {
                if !self.closing {
                    self.remove_in_redis(ctx, msg.session, &session, msg.reason, false);
                }
            }
            return;
        }
        self.unsubscribe_lobby(msg.session);
        let rooms = match self.sessions.get_mut(&msg.session) {
            Some(session) => {
                session.outlet = None;
                session.away_since = Some(Instant::now());
                session.rooms.clone()
            }
            None => return,
        };
        self.away.insert(msg.session);
        for room in &rooms {
            self.leave_locally(room, msg.session);
        }
        let mut cmd = self.function("parlor_presence");
        cmd.arg(msg.session.to_string()).arg("away");
        self.run(ctx, cmd, |_, _, _| {});
    }
}

impl Handler<ClientRequest> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: ClientRequest, ctx: &mut Context<Self>) {
        let serves = self
            .sessions
            .get(&msg.session)
            .is_some_and(|s| s.connection == msg.connection && s.outlet.is_some());
        if serves {
            self.handle_request(ctx, msg.session, msg.frame);
        }
    }
}

impl Handler<GetStats> for ClusterActor {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryStats {
            sessions: self.sessions.len(),
            away: self.away.len(),
            rooms: self.rooms.len(),
            cluster: Some(ClusterHealth {
                node: self.settings.link.node.clone(),
                up: self.is_up(),
            }),
        })
    }
}
