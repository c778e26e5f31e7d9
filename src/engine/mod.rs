//! The contract between the node's front (sessions, HTTP, the backend API) and an engine (the
//! single-node `RegistryActor` in `single`, or a cluster node's actor): the messages both
//! engines answer, and `RegistryHandle`, the one way to reach whichever runs. Sessions reach
//! it through the handle's inbox, in the order they send; a request waits for its place in
//! the queue (`RequestGate`) before its session reads the next one from the socket, so the
//! queue is bounded without refusing anything. The HTTP handlers ask through `Recipient`s.
//! Nothing here knows which engine runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::dev::MessageResponse;
use actix::{Actor, Addr, Context, Handler, Message, Recipient};
use parlor_protocol::{
    ClientFrame, LeaveReason, Ref, RoomFilter, RoomInfo, RoomPosition, SessionId, Value,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::outbox::SessionOutlet;
use crate::registry::{Listing, Profile, RoomDetail};

pub mod logic_store;
pub mod single;

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
    /// Whether the node's store of rooms' logic is failing to write (`None`: no store).
    pub store_failing: Option<bool>,
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

/// The registry has stopped: nothing can be handed to it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the registry has stopped")]
pub struct RegistryGone;

/// The asks the HTTP side makes of an engine, each to whichever actor runs.
#[derive(Clone)]
struct Asks {
    stats: Recipient<GetStats>,
    list_rooms: Recipient<ListRooms>,
    publish: Recipient<Publish>,
    read_room: Recipient<ReadRoom>,
    all_rooms: Recipient<AllRooms>,
    kick_session: Recipient<KickSession>,
    shut_down: Recipient<ShutDown>,
}

/// An engine's actor: it answers every message of the contract.
pub trait Engine:
    SessionHandlers
    + Handler<GetStats>
    + Handler<ListRooms>
    + Handler<Publish>
    + Handler<ReadRoom>
    + Handler<AllRooms>
    + Handler<KickSession>
    + Handler<ShutDown>
{
}

impl<A> Engine for A where
    A: SessionHandlers
        + Handler<GetStats>
        + Handler<ListRooms>
        + Handler<Publish>
        + Handler<ReadRoom>
        + Handler<AllRooms>
        + Handler<KickSession>
        + Handler<ShutDown>
{
}

/// How sessions and HTTP handlers reach the engine that runs: the single-node registry actor,
/// or a cluster node's. Both answer the same messages.
#[derive(Clone)]
pub struct RegistryHandle {
    asks: Asks,
    inbox: mpsc::UnboundedSender<Inbound>,
    gate: RequestGate,
    /// Set once the node has begun to shut down; `/ready` reads it without asking the actor.
    closing: Arc<AtomicBool>,
}

/// Asks from the HTTP side that may wait in an actor's mailbox at once; more wait their turn.
pub const MAILBOX_CAPACITY: usize = 1024;

/// The receiving end of a handle's inbox, for the engine to take as a stream.
pub type InboxReceiver = mpsc::UnboundedReceiver<Inbound>;

impl RegistryHandle {
    /// A new inbox, for an engine being started: hand the receiver to its actor, then call
    /// `for_engine` with the actor's address.
    pub fn inbox() -> (mpsc::UnboundedSender<Inbound>, InboxReceiver) {
        mpsc::unbounded_channel()
    }

    /// The handle of a started engine: its address, the inbox it reads, and the bytes of
    /// requests that may wait for it (see `RequestGate`).
    pub fn for_engine<A: Engine>(
        addr: &Addr<A>,
        inbox: mpsc::UnboundedSender<Inbound>,
        queue_bytes: usize,
    ) -> Self
    where
        A::Context: actix::dev::ToEnvelope<A, GetStats>
            + actix::dev::ToEnvelope<A, ListRooms>
            + actix::dev::ToEnvelope<A, Publish>
            + actix::dev::ToEnvelope<A, ReadRoom>
            + actix::dev::ToEnvelope<A, AllRooms>
            + actix::dev::ToEnvelope<A, KickSession>
            + actix::dev::ToEnvelope<A, ShutDown>,
    {
        Self {
            asks: Asks {
                stats: addr.clone().recipient(),
                list_rooms: addr.clone().recipient(),
                publish: addr.clone().recipient(),
                read_room: addr.clone().recipient(),
                all_rooms: addr.clone().recipient(),
                kick_session: addr.clone().recipient(),
                shut_down: addr.clone().recipient(),
            },
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
        self.asks.stats.send(GetStats).await.ok()
    }

    /// `None` here and below: the registry has stopped, or (a cluster node) Redis could not
    /// be asked.
    pub async fn list_rooms(&self, filter: RoomFilter, limit: usize) -> Option<Vec<RoomInfo>> {
        self.asks
            .list_rooms
            .send(ListRooms { filter, limit })
            .await
            .ok()?
            .ok()
    }

    pub async fn publish(&self, request: Publish) -> Option<Option<u64>> {
        self.asks.publish.send(request).await.ok()?.ok()
    }

    pub async fn read_room(&self, room: String) -> Option<Option<RoomDetail>> {
        self.asks.read_room.send(ReadRoom(room)).await.ok()?.ok()
    }

    pub async fn all_rooms(&self, limit: usize) -> Option<Vec<Listing>> {
        self.asks
            .all_rooms
            .send(AllRooms { limit })
            .await
            .ok()?
            .ok()
    }

    pub async fn kick_session(&self, session: SessionId) -> Option<bool> {
        self.asks
            .kick_session
            .send(KickSession(session))
            .await
            .ok()?
            .ok()
    }

    /// Tells every session the node is going away; returns once the registry has done so.
    /// From the call on, the node is no longer ready (`is_closing`).
    pub async fn shut_down(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.asks.shut_down.send(ShutDown).await;
    }

    /// Whether the node has begun to shut down.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// Places in the registry's request queue, counted in bytes of encoded requests: a binary
/// message of `n` bytes takes `max(n, MIN_REQUEST_COST)` of them until the registry has handled it.
#[derive(Clone)]
pub struct RequestGate {
    semaphore: Arc<Semaphore>,
}

/// The least a request costs in the queue, so that the queue also bounds how many wait.
pub const MIN_REQUEST_COST: usize = 256;

impl RequestGate {
    pub fn new(bytes: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Places free now, for tests and metrics.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The semaphore whose permits are the queue's places.
    pub fn semaphore(&self) -> Arc<Semaphore> {
        Arc::clone(&self.semaphore)
    }

    /// The places a request of `len` encoded bytes takes.
    pub fn cost(len: usize) -> u32 {
        u32::try_from(len.max(MIN_REQUEST_COST)).unwrap_or(u32::MAX)
    }
}

/// A room's logic back from the pool, for its engine's actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LogicFinished(pub crate::game::LogicDone);

/// The threads rooms' due ticks and timers run on, away from an engine's own thread (so that
/// a slow tick holds up only its own room): both engines keep one when they have room types.
pub struct LogicPool(rayon::ThreadPool);

impl LogicPool {
    /// A pool of `threads` threads, if there are room types to run (a plain node starts none).
    pub fn for_types(types: &crate::game::RoomTypes, threads: usize) -> Option<Self> {
        if types.is_empty() {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("parlor-logic-{i}"))
            .build()
            .map(Self)
            .map_err(|err| tracing::error!("no logic pool ({err}): ticks run on the registry"))
            .ok()
    }

    /// Runs `jobs` on the pool; each comes back to `to` as `LogicFinished`.
    pub fn run<A>(&self, jobs: Vec<crate::game::LogicJob>, to: &Addr<A>)
    where
        A: Actor<Context = Context<A>> + Handler<LogicFinished>,
    {
        for mut job in jobs {
            let back = to.clone();
            self.0.spawn(move || {
                // A job that waited for a thread runs, and its lateness counts, as of now.
                job.now = job.now.max(std::time::Instant::now());
                back.do_send(LogicFinished(job.run()));
            });
        }
    }
}

/// When an engine's rooms with logic are next woken (their ticks and timers), and the timer
/// that will: both engines keep one.
#[derive(Default)]
pub struct LogicWake(Option<(std::time::Instant, actix::SpawnHandle)>);

impl LogicWake {
    /// Arms a wake-up at `at` unless one as soon is armed already; `wake` runs then, after
    /// the wake is cleared (`field` finds it in the actor), and may arm the next one.
    pub fn arm<A>(
        &mut self,
        ctx: &mut Context<A>,
        at: Option<std::time::Instant>,
        field: fn(&mut A) -> &mut LogicWake,
        wake: fn(&mut A, &mut Context<A>),
    ) where
        A: Actor<Context = Context<A>>,
    {
        use actix::AsyncContext;
        let Some(at) = at else { return };
        if self.0.as_ref().is_some_and(|(set, _)| *set <= at) {
            return;
        }
        if let Some((_, handle)) = self.0.take() {
            ctx.cancel_future(handle);
        }
        let after = at.saturating_duration_since(std::time::Instant::now());
        let handle = ctx.run_later(after, move |actor, ctx| {
            field(actor).0 = None;
            wake(actor, ctx);
        });
        self.0 = Some((at, handle));
    }
}
