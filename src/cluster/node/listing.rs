//! Room listings and the lobby in a cluster: rooms are listed from Redis, and lobby watchers
//! hear, once per lobby interval, about the rooms whose listing changed anywhere.

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

    pub(super) fn lobby_watchers(&self) -> usize {
        self.sessions.values().filter(|s| s.lobby.is_some()).count()
    }

    pub(super) fn subscribe_lobby(&mut self, id: SessionId, filter: RoomFilter) {
        let first = self.lobby_watchers() == 0;
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.lobby = Some(filter);
        if first {
            if let Some(link) = &self.link {
                link.subscribe(self.settings.link.lobby_channel());
            }
        }
    }

    pub(super) fn unsubscribe_lobby(&mut self, id: SessionId) {
        let had = self
            .sessions
            .get_mut(&id)
            .and_then(|s| s.lobby.take())
            .is_some();
        if had && self.lobby_watchers() == 0 {
            self.lobby_dirty.clear();
            if let Some(link) = &self.link {
                link.unsubscribe(self.settings.link.lobby_channel());
            }
        }
    }

    /// Sends lobby watchers what changed since the last flush: rooms that match their filter
    /// as changed (new ones included), the others as removed.
    pub(super) fn flush_lobby(&mut self, ctx: &mut Context<Self>) {
        if self.lobby_dirty.is_empty() || self.lobby_watchers() == 0 {
            self.lobby_dirty.clear();
            return;
        }
        let names = std::mem::take(&mut self.lobby_dirty);
        let mut cmd = self.function("parlor_rooms");
        for name in &names {
            cmd.arg(name);
        }
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let Ok(Ok(listed)) = reply.map(wire::parse_rooms) else {
                return;
            };
            let by_name: HashMap<&str, &wire::Listed> =
                listed.iter().map(|l| (l.info.room.as_str(), l)).collect();
            let mut frames: HashMap<Bytes, Bytes> = HashMap::new();
            let watchers: Vec<(SessionId, RoomFilter)> = actor
                .sessions
                .iter()
                .filter_map(|(id, s)| s.lobby.clone().map(|f| (*id, f)))
                .collect();
            let mut deliveries = Vec::new();
            for (id, filter) in watchers {
                let key = filter.canonical_key();
                let frame = frames.entry(key).or_insert_with(|| {
                    let mut frame = parlor_protocol::LobbyFrame::default();
                    for name in &names {
                        match by_name.get(name.as_str()) {
                            Some(l) if !l.private && listing_matches(&l.info, &filter) => {
                                frame.changed.push(l.info.clone())
                            }
                            _ => frame.removed.push(name.clone()),
                        }
                    }
                    encode_server(&ServerFrame::Lobby(frame))
                });
                deliveries.push((id, frame.clone()));
            }
            actor.deliver_all(ctx, deliveries);
        });
    }
}

/// The public rooms matching `filter`, oldest first (the order Redis lists them), at most
/// `limit`.
pub(super) fn filtered(
    listed: Vec<wire::Listed>,
    filter: &RoomFilter,
    limit: usize,
) -> Vec<RoomInfo> {
    listed
        .into_iter()
        .filter(|l| !l.private && listing_matches(&l.info, filter))
        .take(limit)
        .map(|l| l.info)
        .collect()
}

fn listing_matches(info: &RoomInfo, filter: &RoomFilter) -> bool {
    crate::registry::listed(false, info.locked, &info.metadata, filter)
}
