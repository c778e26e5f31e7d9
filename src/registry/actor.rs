//! The registry actor: a thin actix shell around `Registry`, on its own arbiter, which also
//! runs the lobby and state-patch timers. Sessions reach it through `RegistryHandle`, which
//! refuses requests rather than queue them without bound.

use std::time::Duration;

use actix::{Actor, Addr, Arbiter, AsyncContext, Context, Handler, Message, MessageResult};
use parlor_protocol::{ClientFrame, LeaveReason, RoomFilter, RoomInfo, SessionId};

use super::{Registry, RegistryLimits};
use crate::session::outbox::SessionOutlet;

/// A new session, and how to reach it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub outlet: SessionOutlet,
}

/// A session has ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub reason: LeaveReason,
}

/// A decoded request from a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientRequest {
    pub session: SessionId,
    pub frame: ClientFrame,
}

/// Live counts, for `/health`.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct GetStats;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RegistryStats {
    pub sessions: usize,
    pub rooms: usize,
}

/// The public rooms matching `filter`, for `GET /rooms`.
#[derive(Message)]
#[rtype(result = "Vec<RoomInfo>")]
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
}

pub struct RegistryActor {
    registry: Registry<SessionOutlet>,
    timers: Timers,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
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
        MessageResult(self.registry.list_rooms(&msg.filter, msg.limit))
    }
}

impl Handler<Connect> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.registry.connect(msg.session, msg.outlet);
    }
}

impl Handler<Disconnect> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.registry.disconnect(msg.session, msg.reason);
    }
}

impl Handler<ClientRequest> for RegistryActor {
    type Result = ();
    fn handle(&mut self, msg: ClientRequest, _: &mut Context<Self>) {
        self.registry.handle(msg.session, msg.frame);
    }
}

impl Handler<GetStats> for RegistryActor {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RegistryStats {
            sessions: self.registry.session_count(),
            rooms: self.registry.room_count(),
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

/// How sessions and HTTP handlers reach the registry. The seam where sharding and the cluster
/// will route by room.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<RegistryActor>,
}

impl RegistryHandle {
    /// Starts the registry actor on an arbiter (thread) of its own, its mailbox bounded to
    /// `mailbox_capacity` requests.
    pub fn start(limits: RegistryLimits, mailbox_capacity: usize, timers: Timers) -> Self {
        let arbiter = Arbiter::new();
        let addr = RegistryActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(mailbox_capacity);
            RegistryActor {
                registry: Registry::new(limits),
                timers,
            }
        });
        Self { addr }
    }

    /// Connects and disconnects are never refused: each session sends one of each, so they
    /// are bounded by the connection cap.
    pub fn connect(&self, msg: Connect) {
        self.addr.do_send(msg);
    }

    pub fn disconnect(&self, msg: Disconnect) {
        self.addr.do_send(msg);
    }

    /// Hands over a client request, or refuses it when the registry's mailbox is full.
    pub fn submit(&self, request: ClientRequest) -> Result<(), SubmitError> {
        self.addr.try_send(request).map_err(|err| match err {
            actix::prelude::SendError::Full(_) => SubmitError::Busy,
            actix::prelude::SendError::Closed(_) => SubmitError::Gone,
        })
    }

    pub async fn stats(&self) -> Option<RegistryStats> {
        self.addr.send(GetStats).await.ok()
    }

    pub async fn list_rooms(&self, filter: RoomFilter, limit: usize) -> Option<Vec<RoomInfo>> {
        self.addr.send(ListRooms { filter, limit }).await.ok()
    }
}
