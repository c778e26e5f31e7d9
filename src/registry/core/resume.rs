//! Resume: a fresh connection takes a session back with its token, and each of its rooms is
//! caught up from the history, or from a snapshot when the history no longer reaches back.

use super::*;

impl<O: Outlet> Registry<O> {
    /// Session `connection` (fresh, in no room) asks to become session `session`, proven by
    /// `token`, and to catch up on each room from `positions`. On success the connection's
    /// outlet now reaches `session`, which gets `resumed` and then, per room, the frames it
    /// missed or a `joined` snapshot; its rooms hear `presence` `back` if it was away, and a
    /// connection still attached to it is closed as replaced. Returns the session the
    /// connection now is, or the error already sent to it.
    pub fn resume(
        &mut self,
        connection: SessionId,
        session: SessionId,
        token: &str,
        positions: &[RoomPosition],
        reference: Option<Ref>,
    ) -> Result<SessionId, RequestError> {
        let result = self.take_over(connection, session, token, positions, reference);
        if let Err(err) = &result {
            self.metrics.resume(ResumeOutcome::Refused);
            self.send_error(connection, reference, err);
        }
        self.evict_overflowed();
        result
    }

    pub(super) fn take_over(
        &mut self,
        connection: SessionId,
        session: SessionId,
        token: &str,
        positions: &[RoomPosition],
        reference: Option<Ref>,
    ) -> Result<SessionId, RequestError> {
        let fresh = self
            .sessions
            .get(&connection)
            .ok_or(RequestError::ResumeFailed("this connection has ended"))?;
        if !fresh.rooms.is_empty() || self.lobby.is_subscribed(connection) {
            return Err(RequestError::ResumeFailed(
                "resume must come before any join or lobby subscription",
            ));
        }
        let genuine = connection != session
            && self.sessions.get(&session).is_some_and(|old| {
                same_secret(token, &old.profile.resume_token)
                    && old.profile.user == fresh.profile.user
            });
        if !genuine {
            return Err(RequestError::ResumeFailed(
                "no such session to resume: unknown, expired, or the token does not match",
            ));
        }
        let Some(fresh) = self.sessions.remove(&connection) else {
            return Err(RequestError::ResumeFailed("this connection has ended"));
        };
        let Some(entry) = self.sessions.get_mut(&session) else {
            return Err(RequestError::ResumeFailed("no such session to resume"));
        };
        let outlet = fresh.outlet;
        if let Some(previous) = std::mem::replace(&mut entry.outlet, outlet.clone()) {
            previous.close(Close::Replaced);
        }
        entry.connection = fresh.connection;
        let was_away = entry.away_since.take().is_some();
        self.away.remove(&session);
        let rooms = entry.rooms.clone();
        let user = entry.profile.user.clone();

        let mut plans = Vec::with_capacity(rooms.len());
        let mut replay_budget = self.limits.replay_budget_bytes;
        for room_name in &rooms {
            // Held patches go out first, so that they are part of the history replayed.
            self.broadcast_patches(room_name);
            let Some(room) = self.rooms.get_mut(room_name) else {
                continue;
            };
            if let Some(member) = room.member_mut(session) {
                member.outlet = outlet.clone();
            }
            let position = positions.iter().find(|p| &p.room == room_name);
            // The frames missed, if this history still holds all of them, minus the session's own.
            let mut replay: Option<Vec<Bytes>> = position
                .filter(|p| p.epoch == room.history.epoch)
                .and_then(|p| room.history.since(p.offset))
                .map(|entries| {
                    entries
                        .filter(|e| e.skip != Some(session))
                        .map(|e| e.frame.clone())
                        .collect()
                });
            // Rooms whose replay no longer fits what is left of the budget get a snapshot.
            if let Some(frames) = &replay {
                let bytes: usize = frames.iter().map(Bytes::len).sum();
                match replay_budget.checked_sub(bytes) {
                    Some(left) => replay_budget = left,
                    None => replay = None,
                }
            }
            plans.push((
                room_name.clone(),
                room.history.epoch.clone(),
                room.history.next_offset,
                replay,
            ));
        }
        let resumed = ServerFrame::Resumed(ResumedFrame {
            reference,
            session,
            rooms: plans
                .iter()
                .map(|(room, epoch, offset, replay)| ResumedRoom {
                    room: room.clone(),
                    epoch: epoch.clone(),
                    offset: *offset,
                    recovered: replay.is_some(),
                })
                .collect(),
        });
        self.send_to(session, &resumed);
        let mut all_recovered = true;
        for (room_name, _, _, replay) in plans {
            match replay {
                Some(frames) => {
                    for frame in frames {
                        self.deliver(session, frame);
                    }
                }
                None => {
                    all_recovered = false;
                    if let Some(joined) = self.joined_frame(&room_name, reference) {
                        self.send_to(session, &joined);
                    }
                }
            }
            // What it alone may see of a room with logic, which no replay carries.
            self.send_view(session, &room_name);
            if was_away {
                self.broadcast(&room_name, Some(session), |offset| {
                    ServerFrame::Presence(PresenceFrame {
                        room: room_name.clone(),
                        session,
                        status: PresenceStatus::Back,
                        reason: None,
                        user: user.clone(),
                        offset,
                    })
                });
                self.logic_presence(&room_name, session, true);
            }
        }
        self.metrics.resume(if all_recovered {
            ResumeOutcome::Replayed
        } else {
            ResumeOutcome::Snapshot
        });
        Ok(session)
    }
}
