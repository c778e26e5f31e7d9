//! Sessions: connecting, a connection's end (away with seats held, or gone), the grace clock,
//! the backend's kick, shutdown, and how frames reach one session (and what happens to one
//! whose outbound budget is spent).

use super::*;

/// Whether a session whose connection ended for `reason` keeps its seats (goes away for the
/// grace) rather than leaving its rooms: only when it dropped (no close frame, or a heartbeat
/// timeout), sessions are held at all, it is in rooms, the node is not closing, and fewer
/// than the most away sessions are held. The one rule both engines apply.
pub fn holds_seats(
    reason: LeaveReason,
    limits: &RegistryLimits,
    in_rooms: bool,
    closing: bool,
    away_now: usize,
) -> bool {
    matches!(reason, LeaveReason::Dropped | LeaveReason::Timeout)
        && !limits.reconnect_grace.is_zero()
        && in_rooms
        && !closing
        && away_now < limits.max_away_sessions
}

impl<O: Outlet> Registry<O> {
    /// Registers a new anonymous session, in no room yet.
    pub fn connect(&mut self, id: SessionId, outlet: O) {
        self.connect_with(id, outlet, Profile::default());
    }

    /// Registers a new session with who it is.
    pub fn connect_with(&mut self, id: SessionId, outlet: O, profile: Profile) {
        self.sessions.insert(
            id,
            SessionEntry {
                outlet: Some(outlet),
                connection: id,
                profile,
                rooms: Vec::new(),
                away_since: None,
                waiting: VecDeque::new(),
            },
        );
    }

    /// The connection session `id` is on now has ended; see `connection_ended`.
    pub fn disconnect(&mut self, id: SessionId, reason: LeaveReason) {
        let connection = self.sessions.get(&id).map(|e| e.connection);
        if let Some(connection) = connection {
            self.connection_ended(id, connection, reason);
        }
    }

    /// Connection `connection` of session `id` has ended for `reason`. If the session has
    /// since moved to another connection (a resume), nothing happens. A session that dropped
    /// (no close frame, or a heartbeat timeout) while in rooms goes away: its seats are held
    /// for `reconnect_grace` and the rooms hear `presence` `away`. Any other end removes it from
    /// every room, and the members who remain are told why.
    pub fn connection_ended(&mut self, id: SessionId, connection: SessionId, reason: LeaveReason) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.connection != connection || entry.away_since.is_some() {
            return;
        }
        let keep = holds_seats(
            reason,
            &self.limits,
            !entry.rooms.is_empty(),
            self.closing,
            self.away.len(),
        );
        if !keep {
            self.remove_session(id, reason);
            self.evict_overflowed();
            return;
        }
        self.go_away(id);
        self.evict_overflowed();
    }

    /// Session `id` goes away: no outlet, its seats held, its rooms told `away`.
    pub(super) fn go_away(&mut self, id: SessionId) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        entry.outlet = None;
        entry.away_since = Some(self.now);
        // Requests the connection made that still wait for a room's logic go with it.
        entry.waiting.clear();
        self.away.insert(id);
        let rooms = entry.rooms.clone();
        let user = entry.profile.user.clone();
        self.lobby.unsubscribe(id);
        for room_name in &rooms {
            if let Some(member) = self.rooms.get_mut(room_name).and_then(|r| r.member_mut(id)) {
                member.outlet = None;
            }
            self.broadcast(room_name, Some(id), |offset| {
                ServerFrame::Presence(PresenceFrame {
                    room: room_name.clone(),
                    session: id,
                    status: PresenceStatus::Away,
                    reason: None,
                    user: user.clone(),
                    offset,
                })
            });
            self.touch(room_name);
            self.logic_presence(room_name, id, false);
        }
    }

    /// Moves the registry's clock to `now` and removes the away sessions whose grace is over
    /// (their rooms hear `left`, reason `timeout`).
    pub fn advance(&mut self, now: Instant) {
        self.now = now;
        self.advance_logic(now);
        let expired = graces_over(&self.away, now, self.limits.reconnect_grace, |id| {
            self.sessions.get(id).and_then(|e| e.away_since)
        });
        for id in expired {
            self.remove_session(id, LeaveReason::Timeout);
        }
        self.evict_overflowed();
    }

    /// Shutting down: every connection is told to close (going away) and no presence is sent
    /// as they end. Held state patches go out first.
    pub fn shut_down(&mut self) {
        self.flush_state_patches();
        self.closing = true;
        for entry in self.sessions.values() {
            if let Some(outlet) = &entry.outlet {
                outlet.close(Close::ShuttingDown);
            }
        }
    }

    /// Removes session `id` from every room (the rooms hear `left`, reason `kicked`) and
    /// closes its connection; for the backend API. False if there is no such session.
    pub fn kick_session(&mut self, id: SessionId) -> bool {
        let Some(outlet) = self.remove_session(id, LeaveReason::Kicked) else {
            return false;
        };
        if let Some(outlet) = outlet {
            outlet.close(Close::Evicted(LeaveReason::Kicked));
        }
        self.evict_overflowed();
        true
    }

    /// Whether session `id` is on connection `connection` now.
    pub fn is_on(&self, id: SessionId, connection: SessionId) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|e| e.connection == connection)
    }

    /// The rooms session `id` is in.
    pub fn rooms_of(&self, id: SessionId) -> Vec<String> {
        self.sessions
            .get(&id)
            .map(|e| e.rooms.clone())
            .unwrap_or_default()
    }

    /// Session `id` as the logic of `room_name` sees it.
    pub(super) fn player(&self, id: SessionId, room_name: &str) -> crate::game::Player {
        let profile = self.sessions.get(&id).map(|e| &e.profile);
        let reader = self
            .rooms
            .get(room_name)
            .is_some_and(|r| r.readers.contains(&id));
        crate::game::Player {
            session: id,
            user: profile.and_then(|p| p.user.clone()),
            // Seated, or (asked before it is) by its token.
            read_only: reader || profile.is_some_and(|p| !p.may_write(room_name)),
        }
    }

    pub(super) fn user_of(&self, id: SessionId) -> Option<String> {
        self.sessions.get(&id).and_then(|e| e.profile.user.clone())
    }

    pub(super) fn send_error(&mut self, id: SessionId, reference: Option<Ref>, err: &RequestError) {
        self.metrics.error(err.code());
        self.send_to(
            id,
            &ServerFrame::Error(ErrorFrame {
                reference,
                code: err.code(),
                message: err.to_string(),
                reason: err.reason(),
            }),
        );
    }

    pub(super) fn send_to(&mut self, id: SessionId, frame: &ServerFrame) {
        self.deliver(id, encode_server(frame));
    }

    pub(super) fn deliver(&mut self, id: SessionId, frame: Bytes) {
        if let Some(outlet) = self.sessions.get(&id).and_then(|e| e.outlet.as_ref()) {
            let len = frame.len();
            if outlet.deliver(frame).is_err() {
                self.overflowed.push(id);
            } else {
                self.metrics.sent(1, len);
            }
        }
    }

    /// Removes a session, its memberships and its lobby subscription; returns its outlet
    /// (`None` inside if it was away) if it was known.
    pub(super) fn remove_session(
        &mut self,
        id: SessionId,
        reason: LeaveReason,
    ) -> Option<Option<O>> {
        // The user id is read while the rooms are told; the entry goes after.
        let rooms = self.sessions.get(&id)?.rooms.clone();
        self.lobby.unsubscribe(id);
        self.away.remove(&id);
        for room in &rooms {
            self.remove_member(room, id, reason);
        }
        self.sessions.remove(&id).map(|entry| entry.outlet)
    }

    /// Evicts every session that overflowed its outbound budget. Telling the remaining members
    /// can overflow further sessions, so this runs until none is left.
    pub(super) fn evict_overflowed(&mut self) {
        while let Some(id) = self.overflowed.pop() {
            if let Some(outlet) = self.remove_session(id, LeaveReason::SlowConsumer) {
                self.metrics.slow_consumer_evictions.inc();
                if let Some(outlet) = outlet {
                    outlet.close(Close::Evicted(LeaveReason::SlowConsumer));
                }
            }
        }
    }
}
