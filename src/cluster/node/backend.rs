//! What the HTTP side asks a cluster node: the backend API (publish, read, list, kick), the
//! room listing, and shutdown (the node's sessions become orphans others may resume).

use super::listing::filtered;
use super::*;
use crate::engine::Unreachable;

impl ClusterActor {
    /// Sends `cmd`; its reply, or `Unreachable` when Redis cannot be asked.
    fn ask(&self, cmd: redis::Cmd) -> impl std::future::Future<Output = Asked> + 'static {
        let reply = self.link.as_ref().map(|l| l.call(cmd));
        async move { reply.ok_or(Unreachable)?.await.map_err(|_| Unreachable) }
    }

    /// Every room as Redis lists it, oldest first.
    fn every_room(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<Listing>, Unreachable>> + 'static {
        let reply = self.ask(self.function("parlor_rooms"));
        async move { wire::parse_rooms(reply.await?).map_err(|_| Unreachable) }
    }
}

type Asked = Result<Reply, Unreachable>;

/// Reads a function's answer: `Ok(Some(rest))` done, `Ok(None)` refused (no such room),
/// `Unreachable` for anything else.
fn answered(reply: Asked) -> Result<Option<Vec<Reply>>, Unreachable> {
    match wire::answer(reply?) {
        Ok(Answer::Ok(rest)) => Ok(Some(rest)),
        Ok(Answer::Refused(_)) => Ok(None),
        _ => Err(Unreachable),
    }
}

impl Handler<Publish> for ClusterActor {
    type Result = ResponseActFuture<Self, Result<Option<u64>, Unreachable>>;
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let frame = wire::with_offset_to_fill(&ServerFrame::Event(EventFrame {
            room: msg.room.clone(),
            from: BACKEND,
            event: msg.event,
            data: msg.data,
            offset: 0,
        }));
        let mut cmd = self.function("parlor_emit");
        cmd.arg("").arg(&msg.room).arg(&frame[..]).arg("");
        let reply = self.ask(cmd);
        Box::pin(
            async move {
                Ok(answered(reply.await)?.and_then(|rest| rest.first().and_then(wire::number)))
            }
            .into_actor(self),
        )
    }
}

impl Handler<ReadRoom> for ClusterActor {
    type Result = ResponseActFuture<Self, Result<Option<RoomDetail>, Unreachable>>;
    fn handle(&mut self, msg: ReadRoom, _: &mut Context<Self>) -> Self::Result {
        let mut cmd = self.function("parlor_snapshot");
        cmd.arg(&msg.0);
        let reply = self.ask(cmd);
        Box::pin(
            async move {
                let Some(rest) = answered(reply.await)? else {
                    return Ok(None);
                };
                let password = wire::snapshot_has_password(&rest);
                let snapshot = Snapshot::parse(&rest).map_err(|_| Unreachable)?;
                Ok(Some(snapshot.detail(password)))
            }
            .into_actor(self),
        )
    }
}

impl Handler<AllRooms> for ClusterActor {
    type Result = ResponseActFuture<Self, Result<Vec<Listing>, Unreachable>>;
    fn handle(&mut self, msg: AllRooms, _: &mut Context<Self>) -> Self::Result {
        let rooms = self.every_room();
        Box::pin(
            async move {
                let listed = rooms.await?;
                Ok(listed.into_iter().take(msg.limit).collect())
            }
            .into_actor(self),
        )
    }
}

impl Handler<ListRooms> for ClusterActor {
    type Result = ResponseActFuture<Self, Result<Vec<RoomInfo>, Unreachable>>;
    fn handle(&mut self, msg: ListRooms, _: &mut Context<Self>) -> Self::Result {
        let rooms = self.every_room();
        Box::pin(async move { Ok(filtered(rooms.await?, &msg.filter, msg.limit)) }.into_actor(self))
    }
}

impl Handler<KickSession> for ClusterActor {
    type Result = ResponseActFuture<Self, Result<bool, Unreachable>>;
    fn handle(&mut self, msg: KickSession, _: &mut Context<Self>) -> Self::Result {
        let mut cmd = self.function("parlor_kick_session");
        cmd.arg(msg.0.to_string());
        let reply = self.ask(cmd);
        Box::pin(
            async move { Ok(wire::number(&reply.await?) == Some(1)) }
                .into_actor(self)
                .map(move |kicked, actor, _| {
                    // A session in no room is not in Redis: only this node knows it.
                    if kicked == Ok(false) {
                        if let Some(session) = actor.forget(msg.0) {
                            if let Some(outlet) = session.outlet {
                                outlet.close(Close::Evicted(LeaveReason::Kicked));
                            }
                            return Ok(true);
                        }
                    }
                    kicked
                }),
        )
    }
}

impl Handler<ShutDown> for ClusterActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: ShutDown, _: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        let mut cmd = self.function("parlor_release");
        cmd.arg(self.limits().reconnect_grace.as_millis() as u64);
        let reply = self.link.as_ref().map(|l| l.call(cmd));
        Box::pin(
            async move {
                if let Some(reply) = reply {
                    let _ = tokio::time::timeout(Duration::from_secs(2), reply).await;
                }
            }
            .into_actor(self)
            .map(|_, actor, _| {
                for session in actor.sessions.values() {
                    if let Some(outlet) = &session.outlet {
                        outlet.close(Close::ShuttingDown);
                    }
                }
            }),
        )
    }
}
