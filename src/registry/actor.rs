//! The registry actor: a thin actix shell around `Registry`, on its own arbiter. Sessions reach
//! it through `RegistryHandle`, which refuses requests rather than queue them without bound.

use actix::{Actor, Addr, Arbiter, Context, Handler, Message, MessageResult};
use parlor_protocol::{ClientFrame, LeaveReason, SessionId};

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

pub struct RegistryActor {
    registry: Registry<SessionOutlet>,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;
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
    pub fn start(limits: RegistryLimits, mailbox_capacity: usize) -> Self {
        let arbiter = Arbiter::new();
        let addr = RegistryActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(mailbox_capacity);
            RegistryActor {
                registry: Registry::new(limits),
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
}
