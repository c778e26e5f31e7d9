//! The single-node engine: `RegistryActor`, a thin actix shell around `Registry` on an arbiter
//! (thread) of its own, which also runs the clock (away sessions' grace), lobby and
//! state-patch timers. It takes sessions' messages from the handle's inbox and the HTTP
//! side's asks from its mailbox. Rooms' due ticks and timers run on the logic pool (threads
//! of their own), and come back as `LogicFinished`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, AsyncContext, Context, Handler, MessageResult, StreamHandler};
use parlor_protocol::SessionId;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::logic_store::LogicStore;
use super::{
    handle_inbound, AllRooms, ClientRequest, Connect, Disconnect, GetStats, Inbound, InboxReceiver,
    KickSession, ListRooms, LogicFinished, LogicPool, LogicWake, Publish, ReadRoom, RegistryHandle,
    RegistryStats, Resume, ShutDown, Unreachable, MAILBOX_CAPACITY,
};
use crate::game::RoomTypes;
use crate::metrics::Metrics;
use crate::outbox::SessionOutlet;
use crate::registry::{Registry, RegistryLimits};

/// Starts the registry actor on an arbiter of its own; requests waiting for it are bounded by
/// `queue_bytes`.
pub fn start(
    limits: RegistryLimits,
    types: RoomTypes,
    logic_threads: usize,
    queue_bytes: usize,
    timers: Timers,
    store_dir: Option<std::path::PathBuf>,
    metrics: Arc<Metrics>,
) -> RegistryHandle {
    let store = store_dir.map(|dir| LogicStore::open(dir, Arc::clone(&metrics)));
    let (inbox, queue) = RegistryHandle::inbox();
    let arbiter = Arbiter::new();
    let pool = LogicPool::for_types(&types, logic_threads);
    let addr = RegistryActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let mut registry = Registry::with_metrics(limits, metrics).with_room_types(types);
        if pool.is_some() {
            registry = registry.with_logic_pool();
        }
        let store = match store {
            Some((store, source)) => {
                registry = registry.with_logic_store(Box::new(source));
                Some(store)
            }
            None => None,
        };
        RegistryActor {
            registry,
            timers,
            inbox: Some(queue),
            logic_wake: LogicWake::default(),
            pool,
            store,
        }
    });
    RegistryHandle::for_engine(&addr, inbox, queue_bytes)
}

/// How often the registry's timers fire. A zero `state_patch_interval` means patches are not
/// held, so no timer runs for them.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub state_patch_interval: Duration,
    pub lobby_interval: Duration,
    /// How often away sessions are checked against their grace.
    pub clock_interval: Duration,
    /// How often rooms' changed logic is handed to the store.
    pub store_flush: Duration,
}

pub struct RegistryActor {
    registry: Registry<SessionOutlet>,
    timers: Timers,
    inbox: Option<InboxReceiver>,
    /// When the rooms' logic is next woken (its ticks and timers).
    logic_wake: LogicWake,
    /// Where rooms' ticks run, off the registry's thread (`None`: on it).
    pool: Option<LogicPool>,
    /// Where rooms' logic is kept between runs (`store.dir`).
    store: Option<LogicStore>,
}

impl RegistryActor {
    /// Sends the ticks now due to the pool, and wakes the registry when a room's logic next
    /// wants the clock, if that is sooner than the wake already set.
    fn wake_logic(&mut self, ctx: &mut Context<Self>) {
        if let Some(pool) = &self.pool {
            pool.run(self.registry.take_logic_jobs(), &ctx.address());
        }
        let at = self.registry.next_logic_deadline();
        self.logic_wake.arm(
            ctx,
            at,
            |actor| &mut actor.logic_wake,
            |actor, ctx| {
                actor.registry.advance(Instant::now());
                actor.wake_logic(ctx);
            },
        );
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(inbox) = self.inbox.take() {
            ctx.add_stream(UnboundedReceiverStream::new(inbox));
        }
        ctx.run_interval(self.timers.clock_interval, |actor, ctx| {
            actor.registry.advance(Instant::now());
            actor.wake_logic(ctx);
        });
        ctx.run_interval(self.timers.lobby_interval, |actor, _| {
            actor.registry.flush_lobby();
        });
        if self.store.is_some() {
            ctx.run_interval(self.timers.store_flush, |actor, _| {
                if let Some(store) = &actor.store {
                    store.write(actor.registry.take_stored_logic());
                }
            });
        }
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
        self.wake_logic(ctx);
    }

    /// Every handle is gone: the node is stopping.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<LogicFinished> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: LogicFinished, ctx: &mut Context<Self>) {
        self.registry.set_clock(Instant::now());
        self.registry.logic_done(msg.0);
        self.wake_logic(ctx);
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
    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.registry.advance(Instant::now());
        self.registry
            .connection_ended(msg.session, msg.connection, msg.reason);
        self.wake_logic(ctx);
    }
}

impl Handler<Resume> for RegistryActor {
    type Result = Option<SessionId>;
    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Option<SessionId> {
        self.registry.advance(Instant::now());
        let resumed = self
            .registry
            .resume(
                msg.current,
                msg.session,
                &msg.token,
                &msg.rooms,
                msg.reference,
            )
            .ok();
        self.wake_logic(ctx);
        resumed
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
        // What changed since the last flush is written before the node goes.
        if let Some(store) = &self.store {
            store.flush(self.registry.take_stored_logic(), Duration::from_secs(5));
        }
        self.registry.shut_down();
    }
}

impl Handler<ClientRequest> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: ClientRequest, ctx: &mut Context<Self>) {
        // A connection the session was resumed away from may still have requests in flight;
        // they are not the session's any more.
        if self.registry.is_on(msg.session, msg.connection) {
            self.registry.set_clock(Instant::now());
            self.registry.handle(msg.session, msg.frame);
        }
        self.wake_logic(ctx);
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
            store_failing: self.store.as_ref().map(LogicStore::failing),
        })
    }
}
