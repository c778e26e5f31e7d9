//! The registry actor: a thin actix shell around `Registry`, on its own arbiter, which also
//! runs the clock (away sessions' grace), lobby and state-patch timers. Sessions reach it
//! through `RegistryHandle`'s inbox, in the order they send; a request waits for its place in
//! the queue (`RequestGate`) before its session reads the next one from the socket, so the
//! queue is bounded without refusing anything. The HTTP handlers ask through the mailbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::MessageResponse;
use actix::{
    Actor, Addr, Arbiter, AsyncContext, Context, Handler, Message, MessageResult, StreamHandler,
};
use parlor_protocol::{
    ClientFrame, LeaveReason, Ref, RoomFilter, RoomInfo, RoomPosition, SessionId, Value,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Listing, Profile, Registry, RegistryLimits, RoomDetail};
use crate::cluster::{ClusterActor, ClusterSettings};
use crate::metrics::Metrics;
use crate::session::outbox::SessionOutlet;
use crate::session::reader::RequestGate;

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

/// Backend API: every room, private ones included (and said to be).
#[derive(Message)]
#[rtype(result = "Result<Vec<Listing>, Unreachable>")]
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

/// What a session sends its registry, in the order it sends it. A request holds its place in
/// the request queue (`RequestGate`) until the registry has handled it.
pub enum Inbound {
    Connect(Connect),
    Request(ClientRequest, Option<OwnedSemaphorePermit>),
    Resume(
        Resume,
        Option<OwnedSemaphorePermit>,
        oneshot::Sender<Option<SessionId>>,
    ),
    Disconnect(Disconnect),
}

/// An engine's actor: it answers the session messages, and takes them from the inbox.
pub trait SessionHandlers:
    Actor<Context = Context<Self>>
    + Handler<Connect>
    + Handler<Disconnect>
    + Handler<ClientRequest>
    + Handler<Resume>
{
}

impl<A> SessionHandlers for A where
    A: Actor<Context = Context<A>>
        + Handler<Connect>
        + Handler<Disconnect>
        + Handler<ClientRequest>
        + Handler<Resume>
{
}

/// Hands one inbox message to the actor's handler for it (the same handler a mailbox message
/// would reach); a resume's answer goes back to the session that waits for it.
pub fn handle_inbound<A: SessionHandlers>(actor: &mut A, inbound: Inbound, ctx: &mut Context<A>) {
    fn run<A: Handler<M>, M: Message>(
        actor: &mut A,
        msg: M,
        ctx: &mut A::Context,
        answer: Option<oneshot::Sender<M::Result>>,
    ) {
        let response = <A as Handler<M>>::handle(actor, msg, ctx);
        response.handle(ctx, answer);
    }
    match inbound {
        Inbound::Connect(msg) => run(actor, msg, ctx, None),
        Inbound::Request(msg, _place) => run(actor, msg, ctx, None),
        Inbound::Resume(msg, _place, answer) => run(actor, msg, ctx, Some(answer)),
        Inbound::Disconnect(msg) => run(actor, msg, ctx, None),
    }
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
    inbox: Option<mpsc::UnboundedReceiver<Inbound>>,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(inbox) = self.inbox.take() {
            ctx.add_stream(UnboundedReceiverStream::new(inbox));
        }
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

impl StreamHandler<Inbound> for RegistryActor {
    fn handle(&mut self, inbound: Inbound, ctx: &mut Context<Self>) {
        handle_inbound(self, inbound, ctx);
    }

    /// Every handle is gone: the node is stopping.
    fn finished(&mut self, _: &mut Context<Self>) {}
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

/// The registry has stopped: nothing can be handed to it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the registry has stopped")]
pub struct RegistryGone;

/// How sessions and HTTP handlers reach the registry: the single-node actor, or a cluster
/// node's. Both answer the same messages.
#[derive(Clone)]
pub struct RegistryHandle {
    inner: Inner,
    inbox: mpsc::UnboundedSender<Inbound>,
    gate: RequestGate,
    /// Set once the node has begun to shut down; `/ready` reads it without asking the actor.
    closing: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Inner {
    Single(Addr<RegistryActor>),
    Cluster(Addr<ClusterActor>),
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

/// Asks from the HTTP side that may wait in an actor's mailbox at once; more wait their turn.
const MAILBOX_CAPACITY: usize = 1024;

impl RegistryHandle {
    /// Starts the registry actor on an arbiter (thread) of its own; requests waiting for it
    /// are bounded by `queue_bytes` (see `RequestGate`).
    pub fn start(
        limits: RegistryLimits,
        queue_bytes: usize,
        timers: Timers,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (inbox, queue) = mpsc::unbounded_channel();
        let arbiter = Arbiter::new();
        let addr = RegistryActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            RegistryActor {
                registry: Registry::with_metrics(limits, metrics),
                timers,
                inbox: Some(queue),
            }
        });
        Self {
            inner: Inner::Single(addr),
            inbox,
            gate: RequestGate::new(queue_bytes),
            closing: Arc::default(),
        }
    }

    /// Starts a cluster node's registry actor on an arbiter of its own.
    pub fn start_cluster(
        settings: ClusterSettings,
        queue_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (inbox, queue) = mpsc::unbounded_channel();
        let arbiter = Arbiter::new();
        let addr = ClusterActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            ctx.add_stream(UnboundedReceiverStream::new(queue));
            ClusterActor::new(settings, metrics)
        });
        Self {
            inner: Inner::Cluster(addr),
            inbox,
            gate: RequestGate::new(queue_bytes),
            closing: Arc::default(),
        }
    }

    /// The places in the request queue a session takes before it hands over a request.
    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }

    /// Connects and disconnects always go through: each session sends one of each, so they
    /// are bounded by the connection cap.
    pub fn connect(&self, msg: Connect) {
        let _ = self.inbox.send(Inbound::Connect(msg));
    }

    pub fn disconnect(&self, msg: Disconnect) {
        let _ = self.inbox.send(Inbound::Disconnect(msg));
    }

    /// Hands over a client request with its place in the queue.
    pub fn submit(
        &self,
        request: ClientRequest,
        place: Option<OwnedSemaphorePermit>,
    ) -> Result<(), RegistryGone> {
        self.inbox
            .send(Inbound::Request(request, place))
            .map_err(|_| RegistryGone)
    }

    /// `None` when the registry has stopped; `Some(None)` when the resume was refused.
    pub async fn resume(
        &self,
        request: Resume,
        place: Option<OwnedSemaphorePermit>,
    ) -> Option<Option<SessionId>> {
        let (answer, answered) = oneshot::channel();
        self.inbox
            .send(Inbound::Resume(request, place, answer))
            .ok()?;
        answered.await.ok()
    }

    pub async fn stats(&self) -> Option<RegistryStats> {
        ask!(self, GetStats).ok()
    }

    /// `None` here and below: the registry has stopped, or (a cluster node) Redis could not
    /// be asked.
    pub async fn list_rooms(&self, filter: RoomFilter, limit: usize) -> Option<Vec<RoomInfo>> {
        ask!(self, ListRooms { filter, limit }).ok()?.ok()
    }

    pub async fn publish(&self, request: Publish) -> Option<Option<u64>> {
        ask!(self, request).ok()?.ok()
    }

    pub async fn read_room(&self, room: String) -> Option<Option<RoomDetail>> {
        ask!(self, ReadRoom(room)).ok()?.ok()
    }

    pub async fn all_rooms(&self, limit: usize) -> Option<Vec<Listing>> {
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
