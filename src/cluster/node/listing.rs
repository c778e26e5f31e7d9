//! Room listings and the lobby in a cluster: rooms are listed from Redis, and lobby
//! subscribers hear, once per lobby interval, about the rooms whose listing changed anywhere
//! (the registry's `Lobby` builds the frames; Redis says how the changed rooms list now).

use super::*;

impl ClusterActor {
    // ---- listings and the lobby ------------------------------------------------------------

    pub(super) fn list_for(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        filter: RoomFilter,
        limit: usize,
        reference: Option<Ref>,
        subscribe: bool,
    ) {
        let cmd = self.function("parlor_rooms");
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let listed = match reply.map(wire::parse_rooms) {
                Ok(Ok(listed)) => listed,
                Ok(Err(err)) => {
                    let err = RequestError::Unavailable(err.to_string());
                    return actor.send_error(ctx, id, reference, &err);
                }
                Err(err) => {
                    let err = RequestError::Unavailable(err.to_string());
                    return actor.send_error(ctx, id, reference, &err);
                }
            };
            let rooms = filtered(listed, &filter, limit);
            if subscribe {
                actor.subscribe_lobby(id, filter);
            }
            actor.send_to(ctx, id, &ServerFrame::RoomList { reference, rooms });
        });
    }

    pub(super) fn subscribe_lobby(&mut self, id: SessionId, filter: RoomFilter) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        if !self.lobby.has_subscribers() {
            if let Some(link) = &self.link {
                link.subscribe(self.settings.link.lobby_channel());
            }
        }
        self.lobby.subscribe(id, filter);
    }

    pub(super) fn unsubscribe_lobby(&mut self, id: SessionId) {
        if self.lobby.unsubscribe(id) && !self.lobby.has_subscribers() {
            if let Some(link) = &self.link {
                link.unsubscribe(self.settings.link.lobby_channel());
            }
        }
    }

    /// Sends lobby subscribers what changed since the last flush, the rooms read from Redis.
    pub(super) fn flush_lobby(&mut self, ctx: &mut Context<Self>) {
        let changes = self.lobby.take_changes();
        if changes.is_empty() || !self.lobby.has_subscribers() {
            return;
        }
        let mut cmd = self.function("parlor_rooms");
        for name in changes.names() {
            cmd.arg(name);
        }
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let Ok(Ok(listed)) = reply.map(wire::parse_rooms) else {
                return;
            };
            let by_name: HashMap<String, Listing> = listed
                .into_iter()
                .map(|l| (l.info.room.clone(), l))
                .collect();
            let frames = actor
                .lobby
                .frames(changes, |name| by_name.get(name).cloned());
            let deliveries = frames
                .into_iter()
                .flat_map(|(frame, to)| to.into_iter().map(move |id| (id, frame.clone())))
                .collect();
            actor.deliver_all(ctx, deliveries);
        });
    }
}

/// The public rooms matching `filter`, oldest first (the order Redis lists them), at most
/// `limit`.
pub(super) fn filtered(listed: Vec<Listing>, filter: &RoomFilter, limit: usize) -> Vec<RoomInfo> {
    listed
        .into_iter()
        .filter(|l| l.matches(filter))
        .take(limit)
        .map(|l| l.info)
        .collect()
}
