//! `ClusterActor`: a cluster node's actor. It owns what is I/O — the node's connections to
//! Redis (`Link`), its timers, the answers HTTP handlers wait for — and runs the node's
//! `Engine`, which decides everything: each message is handed to the engine, and what the
//! engine asks for (`Output`) is carried out. It answers the same messages as the single-node
//! `RegistryActor`, so sessions and the HTTP side do not know which one they talk to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, MessageResult, ResponseFuture, StreamHandler};
use parlor_protocol::SessionId;
use tokio::sync::{mpsc, oneshot};

use super::engine::{Asked, Engine, EngineConfig, Output, ResumeAsk};
use super::link::{Link, LinkConfig, LinkEvent, Replied, REPLY_QUEUE};
use super::redis_store::{self, Expect, StoreConfig};
use super::store::LinkError;
use crate::engine::{
    handle_inbound, AllRooms, ClientRequest, ClusterHealth, Connect, Disconnect, GetStats, Inbound,
    KickSession, ListRooms, Publish, ReadRoom, RegistryStats, Resume, ShutDown, Unreachable,
};
use crate::metrics::Metrics;
use crate::outbox::SessionOutlet;
use crate::registry::{Listing, RegistryLimits, RoomDetail};

/// Events from the link waiting for the actor; beyond this, room frames are dropped and read
/// back from the rooms' logs (messages between nodes wait instead).
const EVENT_QUEUE: usize = 8192;
/// How long a shutdown waits for Redis to take the node's last writes.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// How a cluster node is set up.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub link: LinkConfig,
    /// A node whose heartbeat is older than this is dead; a room's lease lasts this long.
    pub node_ttl: Duration,
    pub limits: RegistryLimits,
    pub lobby_interval: Duration,
    pub state_patch_interval: Duration,
    pub clock_interval: Duration,
    /// The room types (rooms with logic) rooms homed on this node may have.
    pub types: crate::game::RoomTypes,
    /// Threads for the ticks of rooms with logic homed here.
    pub logic_threads: usize,
}

pub struct ClusterActor {
    settings: ClusterSettings,
    store: StoreConfig,
    engine: Engine<SessionOutlet>,
    link: Option<Link>,
    /// What reply each call in flight gives, by token.
    expects: HashMap<u64, Expect>,
    /// Who waits for each ask's answer, by ticket.
    waiters: HashMap<u64, oneshot::Sender<Asked>>,
    commands_up: bool,
    subscriptions_up: bool,
    metrics: Arc<Metrics>,
    /// When the rooms with logic homed here are next woken.
    logic_wake: crate::engine::LogicWake,
    /// Where their ticks run, off this actor's thread, and where they come back to.
    pool: Option<crate::engine::LogicPool>,
    me: Option<actix::Addr<ClusterActor>>,
}

impl ClusterActor {
    pub fn new(settings: ClusterSettings, metrics: Arc<Metrics>) -> Self {
        let pool = crate::engine::LogicPool::for_types(&settings.types, settings.logic_threads);
        let engine = Engine::new(
            EngineConfig {
                logic_pool: pool.is_some(),
                types: settings.types.clone(),
                node: settings.link.node.clone(),
                limits: settings.limits.clone(),
                node_ttl: settings.node_ttl,
                lobby_interval: settings.lobby_interval,
                state_patch_interval: settings.state_patch_interval,
            },
            Arc::clone(&metrics),
            Instant::now(),
        );
        let store = StoreConfig {
            keys: settings.link.keys.clone(),
            node: settings.link.node.clone(),
            ttl_ms: settings.node_ttl.as_millis() as u64,
            history_frames: settings.limits.history_frames,
            redis_cluster: settings.link.cluster,
            emit_targets: Default::default(),
        };
        Self {
            settings,
            store,
            engine,
            link: None,
            expects: HashMap::new(),
            waiters: HashMap::new(),
            commands_up: false,
            subscriptions_up: false,
            logic_wake: crate::engine::LogicWake::default(),
            pool,
            me: None,
            metrics,
        }
    }

    /// The engine, its clock set to now.
    fn engine(&mut self) -> &mut Engine<SessionOutlet> {
        self.engine.clock(Instant::now());
        &mut self.engine
    }

    /// Wakes the engine when a room with logic homed here next wants the clock (its ticks
    /// and timers), if that is sooner than the wake already set.
    fn wake_logic(&mut self, ctx: &mut Context<Self>) {
        let at = self.engine.next_logic_deadline();
        self.logic_wake.arm(
            ctx,
            at,
            |actor| &mut actor.logic_wake,
            |actor, ctx| {
                actor.engine.advance_logic(Instant::now());
                actor.pump();
                actor.wake_logic(ctx);
            },
        );
    }

    /// Carries out everything the engine asks for.
    fn pump(&mut self) {
        if let (Some(pool), Some(me)) = (&self.pool, &self.me) {
            pool.run(self.engine.take_logic_jobs(), me);
        }
        while let Some(output) = self.engine.poll() {
            match output {
                Output::Call { token, op } => {
                    let (cmd, expect, after) = self.store.commands(&op);
                    let sent = match &self.link {
                        Some(link) => link.call_with_token(cmd, token).map(|()| {
                            for cmd in after {
                                // Queued now, in order; its reply does not matter.
                                drop(link.call(cmd));
                            }
                        }),
                        None => Err(LinkError::Down),
                    };
                    match sent {
                        Ok(()) => {
                            self.expects.insert(token, expect);
                        }
                        Err(err) => self.engine.on_reply(token, Err(err)),
                    }
                }
                Output::Subscribe { room, epoch } => {
                    if let Some(link) = &self.link {
                        link.subscribe(self.store.keys.room(&room).channel(&epoch));
                    }
                }
                Output::Unsubscribe { room, epoch } => {
                    if let Some(link) = &self.link {
                        link.unsubscribe(self.store.keys.room(&room).channel(&epoch));
                    }
                }
                Output::Lobby(listen) => {
                    if let Some(link) = &self.link {
                        let channel = self.settings.link.lobby_channel();
                        if listen {
                            link.subscribe(channel);
                        } else {
                            link.unsubscribe(channel);
                        }
                    }
                }
                Output::Answer { ticket, answer } => {
                    if let Some(waiter) = self.waiters.remove(&ticket) {
                        let _ = waiter.send(answer);
                    }
                }
            }
        }
    }

    /// Waits for the answer to ask `ticket`, the engine's outputs carried out first.
    fn wait(&mut self, ticket: u64) -> oneshot::Receiver<Asked> {
        let (answer, asked) = oneshot::channel();
        self.waiters.insert(ticket, answer);
        self.pump();
        asked
    }

    fn on_link_change(&mut self) {
        let up = self.commands_up && self.subscriptions_up;
        self.metrics.cluster_up.set(i64::from(up));
        if up != self.engine.is_up() {
            if up {
                tracing::info!("cluster: connected to Redis; catching up");
            }
            self.engine.on_link(up, Instant::now());
        }
        self.pump();
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address());
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
        let every = self
            .settings
            .clock_interval
            .min(self.settings.node_ttl / 10)
            .min(self.settings.lobby_interval);
        let every = match self.settings.state_patch_interval {
            zero if zero.is_zero() => every,
            patches => every.min(patches),
        };
        ctx.run_interval(every, |actor, _| {
            actor.engine.tick(Instant::now());
            if let Some(link) = &actor.link {
                let dropped = link.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
                actor.metrics.cluster_messages_dropped.inc_by(dropped);
            }
            actor.pump();
        });
    }
}

impl StreamHandler<LinkEvent> for ClusterActor {
    fn handle(&mut self, event: LinkEvent, _: &mut Context<Self>) {
        match event {
            LinkEvent::Room {
                room,
                epoch,
                payload,
            } => self.engine().on_room_frame(&room, &epoch, &payload),
            LinkEvent::Inbox(payload) => self.engine().on_inbox(&payload),
            LinkEvent::Lobby(room) => self.engine().on_lobby(&room),
            LinkEvent::Subscribed { room, epoch } => self.engine().on_subscribed(&room, &epoch),
            LinkEvent::Commands(up) => {
                self.commands_up = up;
                return self.on_link_change();
            }
            LinkEvent::Subscriptions(up) => {
                self.subscriptions_up = up;
                return self.on_link_change();
            }
        }
        self.pump();
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<Replied> for ClusterActor {
    fn handle(&mut self, replied: Replied, ctx: &mut Context<Self>) {
        let Some(expect) = self.expects.remove(&replied.token) else {
            return;
        };
        let reply = replied.reply.and_then(|value| {
            redis_store::read(expect, &value).map_err(|err| {
                tracing::error!("cluster: {err}");
                LinkError::Refused(err.to_string())
            })
        });
        self.engine().on_reply(replied.token, reply);
        self.pump();
        self.wake_logic(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<Inbound> for ClusterActor {
    fn handle(&mut self, inbound: Inbound, ctx: &mut Context<Self>) {
        handle_inbound(self, inbound, ctx);
        self.wake_logic(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<crate::engine::LogicFinished> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: crate::engine::LogicFinished, ctx: &mut Context<Self>) {
        self.engine().logic_done(msg.0);
        self.pump();
        self.wake_logic(ctx);
    }
}

impl Handler<Connect> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.engine().connect(msg.session, msg.outlet, msg.profile);
        self.pump();
    }
}

impl Handler<Disconnect> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.engine()
            .disconnect(msg.session, msg.connection, msg.reason);
        self.pump();
    }
}

impl Handler<ClientRequest> for ClusterActor {
    type Result = ();
    fn handle(&mut self, msg: ClientRequest, _: &mut Context<Self>) {
        self.engine()
            .request(msg.session, msg.connection, msg.frame);
        self.pump();
    }
}

impl Handler<Resume> for ClusterActor {
    type Result = ResponseFuture<Option<SessionId>>;
    fn handle(&mut self, msg: Resume, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().resume(ResumeAsk {
            current: msg.current,
            session: msg.session,
            token: msg.token,
            positions: msg.rooms,
            reference: msg.reference,
        });
        let asked = self.wait(ticket);
        Box::pin(async move {
            match asked.await {
                Ok(Asked::Resumed(session)) => session,
                _ => None,
            }
        })
    }
}

impl Handler<GetStats> for ClusterActor {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryStats {
            sessions: self.engine.session_count(),
            away: self.engine.away_count(),
            rooms: self.engine.local_room_count(),
            cluster: Some(ClusterHealth {
                node: self.settings.link.node.clone(),
                up: self.engine.is_up(),
            }),
            store_failing: None,
        })
    }
}

impl Handler<ListRooms> for ClusterActor {
    type Result = ResponseFuture<Result<Vec<parlor_protocol::RoomInfo>, Unreachable>>;
    fn handle(&mut self, msg: ListRooms, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().list_rooms(msg.filter, msg.limit);
        let asked = self.wait(ticket);
        Box::pin(async move {
            match asked.await {
                Ok(Asked::Listed(rooms)) => rooms,
                _ => Err(Unreachable),
            }
        })
    }
}

impl Handler<Publish> for ClusterActor {
    type Result = ResponseFuture<Result<Option<u64>, Unreachable>>;
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().publish(msg.room, msg.event, msg.data);
        let asked = self.wait(ticket);
        Box::pin(async move {
            match asked.await {
                Ok(Asked::Published(offset)) => offset,
                _ => Err(Unreachable),
            }
        })
    }
}

impl Handler<ReadRoom> for ClusterActor {
    type Result = ResponseFuture<Result<Option<RoomDetail>, Unreachable>>;
    fn handle(&mut self, msg: ReadRoom, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().read_room(msg.0);
        let asked = self.wait(ticket);
        Box::pin(async move {
            match asked.await {
                Ok(Asked::Room(room)) => room,
                _ => Err(Unreachable),
            }
        })
    }
}

impl Handler<AllRooms> for ClusterActor {
    type Result = ResponseFuture<Result<Vec<Listing>, Unreachable>>;
    fn handle(&mut self, msg: AllRooms, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().all_rooms(msg.limit);
        let asked = self.wait(ticket);
        Box::pin(async move {
            match asked.await {
                Ok(Asked::AllRooms(rooms)) => rooms,
                _ => Err(Unreachable),
            }
        })
    }
}

impl Handler<KickSession> for ClusterActor {
    type Result = ResponseFuture<Result<bool, Unreachable>>;
    fn handle(&mut self, msg: KickSession, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().kick(msg.0);
        let asked = self.wait(ticket);
        Box::pin(async move {
            match asked.await {
                Ok(Asked::Kicked(kicked)) => kicked,
                _ => Err(Unreachable),
            }
        })
    }
}

impl Handler<ShutDown> for ClusterActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: ShutDown, _: &mut Context<Self>) -> Self::Result {
        let ticket = self.engine().shut_down();
        let asked = self.wait(ticket);
        Box::pin(async move {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, asked).await;
        })
    }
}
