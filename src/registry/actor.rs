//! The registry actor: a thin actix shell around `Registry`, on its own arbiter, which also
//! runs the clock (away sessions' grace), lobby and state-patch timers. Sessions and the HTTP
//! handlers reach it through `RegistryHandle`, which refuses requests rather than queue them
//! without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, AsyncContext, Context, Handler, Message, MessageResult};
use parlor_protocol::{
    ClientFrame, LeaveReason, Ref, RoomFilter, RoomInfo, RoomPosition, SessionId, Value,
};

use super::{Profile, Registry, RegistryLimits, RoomDetail};
use crate::cluster::{ClusterActor, ClusterSettings};
use crate::metrics::Metrics;
use crate::session::outbox::SessionOutlet;

/// A cluster node could not ask Redis: the answer is unknown (not "none").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable;

/// A new session, who it is, and how to reach it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub outlet: SessionOutlet,
    pub profile: Profile,
}

/// A connection has ended; `session` is the session it was when it did.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub connection: SessionId,
    pub reason: LeaveReason,
}

/// Connection `current` (still the fresh session it started as) asks to become `session`.
/// Answered with the session it now is, or `None` when refused (the error is already sent).
#[derive(Message)]
#[rtype(result = "Option<SessionId>")]
pub struct Resume {
    pub current: SessionId,
    pub session: SessionId,
    pub token: String,
    pub rooms: Vec<RoomPosition>,
    pub reference: Option<Ref>,
}

/// Backend API: emit an event into a room. Answered with its offset, `None` without the room.
#[derive(Message)]
#[rtype(result = "Result<Option<u64>, Unreachable>")]
pub struct Publish {
    pub room: String,
    pub event: String,
    pub data: Value,
}

/// Backend API: one room, whole.
#[derive(Message)]
#[rtype(result = "Result<Option<RoomDetail>, Unreachable>")]
pub struct ReadRoom(pub String);

/// Backend API: every room, private ones included.
#[derive(Message)]
#[rtype(result = "Result<Vec<RoomInfo>, Unreachable>")]
pub struct AllRooms {
    pub limit: usize,
}

/// Backend API: remove a session and close its connection. False if there is none.
#[derive(Message)]
#[rtype(result = "Result<bool, Unreachable>")]
pub struct KickSession(pub SessionId);

/// The node is stopping: close every connection with going away.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutDown;

/// A decoded request from a session, on connection `connection`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientRequest {
    pub session: SessionId,
    pub connection: SessionId,
    pub frame: ClientFrame,
}

/// Live counts, for `/health`.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct GetStats;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistryStats {
    pub sessions: usize,
    pub away: usize,
    /// Rooms on this node: all of them on a single node; in a cluster, the rooms this node
    /// has members in.
    pub rooms: usize,
    /// `None` on a single node.
    pub cluster: Option<ClusterHealth>,
}

/// A cluster node's name and whether it reaches Redis.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterHealth {
    pub node: String,
    pub up: bool,
}

/// The public rooms matching `filter`, for `GET /rooms`.
#[derive(Message)]
#[rtype(result = "Result<Vec<RoomInfo>, Unreachable>")]
pub struct ListRooms {
    pub filter: RoomFilter,
    pub limit: usize,
}

/// How often the registry's timers fire. A zero `state_patch_interval` means patches are not
/// held, so no timer runs for them.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub state_patch_interval: Duration,
    pub lobby_interval: Duration,
    /// How often away sessions are checked against their grace.
    pub clock_interval: Duration,
}

pub struct RegistryActor {
    registry: Registry<SessionOutlet>,
    timers: Timers,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.timers.clock_interval, |actor, _| {
            actor.registry.advance(Instant::now());
        });
        ctx.run_interval(self.timers.lobby_interval, |actor, _| {
            actor.registry.flush_lobby();
        });
        if !self.timers.state_patch_interval.is_zero() {
            ctx.run_interval(self.timers.state_patch_interval, |actor, _| {
                actor.registry.flush_state_patches();
            });
        }
    }
}

impl Handler<ListRooms> for RegistryActor {
    type Result = MessageResult<ListRooms>;
    fn handle(&mut self, msg: ListRooms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Ok(self.registry.list_rooms(&msg.filter, msg.limit)))
    }
}

impl Handler<Connect> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.registry
            .connect_with(msg.session, msg.outlet, msg.profile);
    }
}

impl Handler<Disconnect> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.registry.advance(Instant::now());
        self.registry
            .connection_ended(msg.session, msg.connection, msg.reason);
    }
}

impl Handler<Resume> for RegistryActor {
    type Result = Option<SessionId>;
    fn handle(&mut self, msg: Resume, _: &mut Context<Self>) -> Option<SessionId> {
        self.registry.advance(Instant::now());
        self.registry
            .resume(
                msg.current,
                msg.session,
                &msg.token,
                &msg.rooms,
                msg.reference,
            )
            .ok()
    }
}

impl Handler<Publish> for RegistryActor {
    type Result = Result<Option<u64>, Unreachable>;
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        Ok(self.registry.publish(&msg.room, msg.event, msg.data))
    }
}

impl Handler<ReadRoom> for RegistryActor {
    type Result = MessageResult<ReadRoom>;
    fn handle(&mut self, msg: ReadRoom, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Ok(self.registry.room_detail(&msg.0)))
    }
}

impl Handler<AllRooms> for RegistryActor {
    type Result = MessageResult<AllRooms>;
    fn handle(&mut self, msg: AllRooms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Ok(self.registry.all_rooms(msg.limit)))
    }
}

impl Handler<KickSession> for RegistryActor {
    type Result = Result<bool, Unreachable>;
    fn handle(&mut self, msg: KickSession, _: &mut Context<Self>) -> Self::Result {
        Ok(self.registry.kick_session(msg.0))
    }
}

impl Handler<ShutDown> for RegistryActor {
    type Result = ();
    fn handle(&mut self, _: ShutDown, _: &mut Context<Self>) {
        self.registry.shut_down();
    }
}

impl Handler<ClientRequest> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: ClientRequest, _: &mut Context<Self>) {
        // A connection the session was resumed away from may still have requests in flight;
        // they are not the session's any more.
        if self.registry.is_on(msg.session, msg.connection) {
            self.registry.handle(msg.session, msg.frame);
        }
    }
}

impl Handler<GetStats> for RegistryActor {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryStats {
            sessions: self.registry.session_count(),
            away: self.registry.away_count(),
            rooms: self.registry.room_count(),
            cluster: None,
        })
    }
}

/// Why a request could not be handed to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the registry's mailbox is full")]
    Busy,
    #[error("the registry has stopped")]
    Gone,
}

/// How sessions and HTTP handlers reach the registry: the single-node actor, or a cluster
/// node's. Both answer the same messages.
#[derive(Clone)]
pub struct RegistryHandle {
    inner: Inner,
    /// Set once the node has begun to shut down; `/ready` reads it without asking the actor.
    closing: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Inner {
    Single(Addr<RegistryActor>),
    Cluster(Addr<ClusterActor>),
}

/// Hands `$msg` to whichever actor the handle holds, with `$how` (`do_send`, `try_send`).
macro_rules! dispatch {
    ($handle:expr, $how:ident, $msg:expr) => {
        match &$handle.inner {
            Inner::Single(addr) => addr.$how($msg),
            Inner::Cluster(addr) => addr.$how($msg),
        }
    };
}

/// Sends `$msg` to whichever actor the handle holds and waits for the answer.
macro_rules! ask {
    ($handle:expr, $msg:expr) => {
        match &$handle.inner {
            Inner::Single(addr) => addr.send($msg).await,
            Inner::Cluster(addr) => addr.send($msg).await,
        }
    };
}

impl RegistryHandle {
    /// Starts the registry actor on an arbiter (thread) of its own, its mailbox bounded to
    /// `mailbox_capacity` requests.
    pub fn start(
        limits: RegistryLimits,
        mailbox_capacity: usize,
        timers: Timers,
        metrics: Arc<Metrics>,
    ) -> Self {
        let arbiter = Arbiter::new();
        let addr = RegistryActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(mailbox_capacity);
            RegistryActor {
                registry: Registry::with_metrics(limits, metrics),
                timers,
            }
        });
        Self {
            inner: Inner::Single(addr),
            closing: Arc::default(),
        }
    }

    /// Starts a cluster node's registry actor on an arbiter of its own.
    pub fn start_cluster(
        settings: ClusterSettings,
        mailbox_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let arbiter = Arbiter::new();
        let addr = ClusterActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(mailbox_capacity);
            ClusterActor::new(settings, metrics)
        });
        Self {
            inner: Inner::Cluster(addr),
            closing: Arc::default(),
        }
    }

    /// Connects and disconnects are never refused: each session sends one of each, so they
    /// are bounded by the connection cap.
    pub fn connect(&self, msg: Connect) {
        dispatch!(self, do_send, msg);
    }

    pub fn disconnect(&self, msg: Disconnect) {
        dispatch!(self, do_send, msg);
    }

    /// Hands over a client request, or refuses it when the registry's mailbox is full.
    pub fn submit(&self, request: ClientRequest) -> Result<(), SubmitError> {
        dispatch!(self, try_send, request).map_err(|err| match err {
            actix::prelude::SendError::Full(_) => SubmitError::Busy,
            actix::prelude::SendError::Closed(_) => SubmitError::Gone,
        })
    }

    pub async fn stats(&self) -> Option<RegistryStats> {
        ask!(self, GetStats).ok()
    }

    /// `None` here and below: the registry has stopped, or (a cluster node) Redis could not
    /// be asked.
    pub async fn list_rooms(&self, filter: RoomFilter, limit: usize) -> Option<Vec<RoomInfo>> {
        ask!(self, ListRooms { filter, limit }).ok()?.ok()
    }

    /// `None` when the registry has stopped; `Some(None)` when the resume was refused.
    pub async fn resume(&self, request: Resume) -> Option<Option<SessionId>> {
        ask!(self, request).ok()
    }

    pub async fn publish(&self, request: Publish) -> Option<Option<u64>> {
        ask!(self, request).ok()?.ok()
    }

    pub async fn read_room(&self, room: String) -> Option<Option<RoomDetail>> {
        ask!(self, ReadRoom(room)).ok()?.ok()
    }

    pub async fn all_rooms(&self, limit: usize) -> Option<Vec<RoomInfo>> {
        ask!(self, AllRooms { limit }).ok()?.ok()
    }

    pub async fn kick_session(&self, session: SessionId) -> Option<bool> {
        ask!(self, KickSession(session)).ok()?.ok()
    }

    /// Tells every session the node is going away; returns once the registry has done so.
    /// From the call on, the node is no longer ready (`is_closing`).
    pub async fn shut_down(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = ask!(self, ShutDown);
    }

    /// Whether the node has begun to shut down.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}
