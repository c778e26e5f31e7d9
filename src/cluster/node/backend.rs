//! What the HTTP side asks a cluster node: the backend API (publish, read, list, kick), the
//! room listing, and shutdown (the node's sessions become orphans others may resume).

use super::listing::filtered;
use super::*;

impl Handler<Publish> for ClusterActor {
    type Result = ResponseActFuture<Self, Option<u64>>;
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
        let reply = self.link.as_ref().map(|l| l.call(cmd));
        Box::pin(
            async move {
                match reply?.await.ok().map(wire::answer) {
                    Some(Ok(Answer::Ok(rest))) => rest.first().and_then(wire::number),
                    _ => None,
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<ReadRoom> for ClusterActor {
    type Result = ResponseActFuture<Self, Option<RoomDetail>>;
    fn handle(&mut self, msg: ReadRoom, _: &mut Context<Self>) -> Self::Result {
        let mut cmd = self.function("parlor_snapshot");
        cmd.arg(&msg.0);
        let reply = self.link.as_ref().map(|l| l.call(cmd));
        Box::pin(
            async move {
                match reply?.await.ok().map(wire::answer) {
                    Some(Ok(Answer::Ok(rest))) => {
                        let password = wire::snapshot_has_password(&rest);
                        Snapshot::parse(&rest).ok().map(|s| s.detail(password))
                    }
                    _ => None,
                }
            }
            .into_actor(self),
        )
    }
}

impl ClusterActor {
    /// Every room as Redis lists it, oldest first; nothing when Redis cannot be read.
    fn every_room(&self) -> impl std::future::Future<Output = Vec<Listing>> + 'static {
        let reply = self
            .link
            .as_ref()
            .map(|l| l.call(self.function("parlor_rooms")));
        async move {
            let Some(reply) = reply else {
                return Vec::new();
            };
            reply
                .await
                .ok()
                .and_then(|r| wire::parse_rooms(r).ok())
                .unwrap_or_default()
        }
    }
}

impl Handler<AllRooms> for ClusterActor {
    type Result = ResponseActFuture<Self, Vec<RoomInfo>>;
    fn handle(&mut self, msg: AllRooms, _: &mut Context<Self>) -> Self::Result {
        let rooms = self.every_room();
        Box::pin(
            async move {
                let listed = rooms.await;
                listed.into_iter().take(msg.limit).map(|l| l.info).collect()
            }
            .into_actor(self),
        )
    }
}

impl Handler<ListRooms> for ClusterActor {
    type Result = ResponseActFuture<Self, Vec<RoomInfo>>;
    fn handle(&mut self, msg: ListRooms, _: &mut Context<Self>) -> Self::Result {
        let rooms = self.every_room();
        Box::pin(async move { filtered(rooms.await, &msg.filter, msg.limit) }.into_actor(self))
    }
}

impl Handler<KickSession> for ClusterActor {
    type Result = ResponseActFuture<Self, bool>;
    fn handle(&mut self, msg: KickSession, _: &mut Context<Self>) -> Self::Result {
        let local = self.sessions.contains_key(&msg.0);
        let mut cmd = self.function("parlor_kick_session");
        cmd.arg(msg.0.to_string());
        let reply = self.link.as_ref().map(|l| l.call(cmd));
        Box::pin(
            async move {
                let Some(reply) = reply else {
                    return false;
                };
                matches!(reply.await.as_ref().map(wire::number), Ok(Some(1)))
            }
            .into_actor(self)
            .map(move |kicked, actor, _| {
                // A session in no room is not in Redis: only this node knows it.
                if !kicked && local {
                    if let Some(session) = actor.forget(msg.0) {
                        if let Some(outlet) = session.outlet {
                            outlet.close(Close::Evicted(LeaveReason::Kicked));
                        }
                        return true;
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
