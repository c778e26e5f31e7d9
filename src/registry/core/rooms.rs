//! Rooms and membership: join, create, leave, kick, lock, metadata, emit and direct sends;
//! who may enter, the seats, the owner's hand-over, and what every member is told.

use super::*;

/// Whether a session in `from_rooms` may `send` to one in `to_rooms`: they share a room. Each
/// engine passes only the rooms a `send` may go through (plain rooms: not around a room's
/// logic). The one rule both engines apply.
pub fn may_send<S: AsRef<str>>(from_rooms: &[S], to_rooms: &[S]) -> bool {
    from_rooms
        .iter()
        .any(|r| to_rooms.iter().any(|t| t.as_ref() == r.as_ref()))
}

/// Whether a session (who it is, the rooms it is in, and how many joins of its are still under
/// way) may join one more room, and not `room_name` twice or against its token's claim. The
/// one rule both engines apply.
pub fn can_join(
    limits: &RegistryLimits,
    profile: &Profile,
    rooms: &[String],
    joining: usize,
    room_name: Option<&str>,
) -> Result<(), RequestError> {
    if let Some(name) = room_name {
        if rooms.iter().any(|r| r == name) {
            return Err(RequestError::AlreadyJoined(name.to_owned()));
        }
        if !profile.may_enter(name) {
            return Err(RequestError::Forbidden(name.to_owned()));
        }
    }
    if rooms.len() + joining >= limits.max_rooms_per_session {
        return Err(RequestError::TooManyRooms {
            max: limits.max_rooms_per_session,
        });
    }
    Ok(())
}

impl<O: Outlet> Registry<O> {
    /// Whether session `id`'s token lets it enter `room_name`.
    pub(super) fn may_enter(&self, id: SessionId, room_name: &str) -> bool {
        self.sessions
            .get(&id)
            .is_none_or(|e| e.profile.may_enter(room_name))
    }

    pub(super) fn check_may_enter(
        &self,
        id: SessionId,
        room_name: &str,
    ) -> Result<(), RequestError> {
        if self.may_enter(id, room_name) {
            Ok(())
        } else {
            Err(RequestError::Forbidden(room_name.to_owned()))
        }
    }

    /// Checks that session `id` may join one more room, and not `room_name` twice.
    pub(super) fn check_can_join(
        &self,
        id: SessionId,
        room_name: Option<&str>,
    ) -> Result<(), RequestError> {
        let entry = self
            .sessions
            .get(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        can_join(&self.limits, &entry.profile, &entry.rooms, 0, room_name)
    }

    pub(super) fn join(
        &mut self,
        id: SessionId,
        room_name: String,
        password: Option<&str>,
        create: bool,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        self.limits.check_room_name(&room_name)?;
        self.check_can_join(id, Some(&room_name))?;
        match self.rooms.get(&room_name) {
            None if !create => return Err(RequestError::RoomNotFound(room_name)),
            None => {
                let rules = self.limits.default_rules();
                self.open_room(&room_name, rules)?;
            }
            Some(room) => {
                if room.locked_by_hand {
                    return Err(RequestError::RoomLocked(room_name));
                }
                if room.is_full() {
                    let max = room.max_members;
                    return Err(RequestError::RoomFull {
                        room: room_name,
                        max,
                    });
                }
                if let Some(expected) = &room.password {
                    if !password.is_some_and(|given| same_secret(given, expected)) {
                        return Err(RequestError::WrongPassword(room_name));
                    }
                }
            }
        }
        self.enter(id, &room_name, reference)?;
        Ok(Answered::No)
    }

    pub(super) fn create(
        &mut self,
        id: SessionId,
        room_name: Option<String>,
        options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        let room_name = match room_name {
            Some(name) => {
                self.limits.check_room_name(&name)?;
                // The claim first: a user must not learn which rooms exist outside it.
                self.check_may_enter(id, &name)?;
                if self.rooms.contains_key(&name) {
                    return Err(RequestError::RoomExists(name));
                }
                name
            }
            None => new_room_id(),
        };
        let rules = self.limits.rules_from(options)?;
        self.check_can_join(id, Some(&room_name))?;
        self.open_room(&room_name, rules)?;
        self.enter(id, &room_name, reference)?;
        Ok(Answered::No)
    }

    /// Creates an empty room (which the caller then fills), within `max_rooms`.
    pub(super) fn open_room(&mut self, name: &str, rules: RoomRules) -> Result<(), RequestError> {
        if self.rooms.len() >= self.limits.max_rooms {
            return Err(RequestError::RoomLimit {
                max: self.limits.max_rooms,
            });
        }
        let private = rules.private;
        let logic = self.make_logic(name, &rules)?;
        self.rooms_created += 1;
        let mut room = Room::new(rules, self.rooms_created);
        let effects = logic.map(|(logic, effects)| {
            self.metrics.logic_room(logic.kind(), true);
            room.logic = Some(LogicSlot::new(logic));
            effects
        });
        self.rooms.insert(name.to_owned(), room);
        self.schedule_logic(name);
        if !private {
            self.lobby.added(name);
        }
        if let Some(host) = &mut self.host {
            host.disposed.remove(name);
        }
        self.touch(name);
        if let Some(effects) = effects {
            self.carry_out(name, effects);
        }
        Ok(())
    }

    /// Makes `id` a member of the existing room `room_name`; every check has been made. The
    /// others hear `presence`, the newcomer gets `joined` with the whole room.
    pub(super) fn admit(&mut self, id: SessionId, room_name: &str, reference: Option<Ref>) {
        let Some((outlet, user)) = self
            .sessions
            .get(&id)
            .map(|e| (e.outlet.clone(), e.profile.user.clone()))
        else {
            return;
        };
        // Patches held for the members already there go first, so that the newcomer's
        // snapshot is exactly what they have after them.
        self.broadcast_patches(room_name);
        let Some(was_locked) = self.rooms.get(room_name).map(Room::is_locked) else {
            return;
        };
        self.broadcast(room_name, None, |offset| {
            ServerFrame::Presence(PresenceFrame {
                room: room_name.to_owned(),
                session: id,
                status: PresenceStatus::Joined,
                reason: None,
                user,
                offset,
            })
        });
        let reads_only = self
            .sessions
            .get(&id)
            .is_some_and(|e| !e.profile.may_write(room_name));
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        room.members.push(Member { id, outlet });
        if reads_only {
            room.readers.insert(id);
        }
        // A reader never owns a room: it is owned by its oldest writer, or by no one.
        let owner_came = room.owner.is_none() && !reads_only;
        if owner_came {
            room.owner = Some(id);
        }
        let others = room.members.len() > 1;
        let now_locked = room.is_locked();
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.rooms.push(room_name.to_owned());
        }
        if let Some(joined) = self.joined_frame(room_name, reference) {
            self.send_to(id, &joined);
        }
        if now_locked != was_locked || (owner_came && others) {
            self.announce_room_update(room_name, Some(id));
        }
        self.room_changed(room_name);
    }

    /// `joined` for a member of `room_name`: the whole room as it is now.
    pub(super) fn joined_frame(
        &self,
        room_name: &str,
        reference: Option<Ref>,
    ) -> Option<ServerFrame> {
        let room = self.rooms.get(room_name)?;
        let users: BTreeMap<SessionId, String> = room
            .members
            .iter()
            .filter_map(|m| self.user_of(m.id).map(|user| (m.id, user)))
            .collect();
        Some(ServerFrame::Joined(JoinedFrame {
            reference,
            room: room_name.to_owned(),
            members: room.member_ids(),
            owner: room.owner,
            max_members: u32::try_from(room.max_members).unwrap_or(u32::MAX),
            locked: room.is_locked(),
            locked_by_owner: room.locked_by_hand,
            private: room.private,
            metadata: room.metadata.clone(),
            state: room.state.clone(),
            version: room.version,
            epoch: room.history.epoch.clone(),
            offset: room.history.next_offset,
            users,
            away: room.away_ids(),
            room_type: room.room_type().map(str::to_owned),
        }))
    }

    pub(super) fn leave(
        &mut self,
        id: SessionId,
        room_name: &str,
    ) -> Result<Answered, RequestError> {
        self.limits.check_room_name(room_name)?;
        self.drop_membership(id, room_name, LeaveReason::Leave)?;
        Ok(Answered::No)
    }

    /// Takes `id` out of `room_name` for `reason`: the others hear `presence`, `id` gets `left`.
    pub(super) fn drop_membership(
        &mut self,
        id: SessionId,
        room_name: &str,
        reason: LeaveReason,
    ) -> Result<(), RequestError> {
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        let Some(index) = entry.rooms.iter().position(|r| r == room_name) else {
            return Err(RequestError::NotInRoom(room_name.to_owned()));
        };
        entry.rooms.remove(index);
        // An away session kicked from its last room has nothing left to come back to.
        let forget = entry.away_since.is_some() && entry.rooms.is_empty();
        self.remove_member(room_name, id, reason);
        self.send_to(
            id,
            &ServerFrame::Left {
                room: room_name.to_owned(),
                reason,
            },
        );
        if forget {
            self.sessions.remove(&id);
            self.away.remove(&id);
        }
        Ok(())
    }

    pub(super) fn emit(
        &mut self,
        id: SessionId,
        room_name: String,
        event: String,
        data: Value,
        echo: bool,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        self.limits.check_room_name(&room_name)?;
        self.limits.check_event_name(&event)?;
        // Membership is checked on the session's side: a handful of rooms, not a room's
        // possibly thousands of members, on the hottest path.
        let is_member = self
            .sessions
            .get(&id)
            .is_some_and(|e| e.rooms.contains(&room_name));
        let Some(room) = self.rooms.get(&room_name).filter(|_| is_member) else {
            return Err(RequestError::NotInRoom(room_name));
        };
        if room.logic.is_some() {
            return self.logic_message(id, &room_name, &event, data, reference);
        }
        if room.readers.contains(&id) {
            return Err(RequestError::ReadOnly(room_name));
        }
        let skip = (!echo).then_some(id);
        self.broadcast(&room_name, skip, |offset| {
            ServerFrame::Event(EventFrame {
                room: room_name.clone(),
                from: id,
                event,
                data,
                offset,
            })
        });
        Ok(Answered::No)
    }

    pub(super) fn send_direct(
        &mut self,
        id: SessionId,
        to: SessionId,
        event: String,
        data: Value,
    ) -> Result<Answered, RequestError> {
        self.limits.check_event_name(&event)?;
        // A room with logic is no way around it: only a plain room shared counts, and only
        // one the sender may write in.
        let shares_room = match (self.sessions.get(&id), self.sessions.get(&to)) {
            (Some(from), Some(target)) => {
                let from_rooms: Vec<&String> = from
                    .rooms
                    .iter()
                    .filter(|r| {
                        self.rooms
                            .get(*r)
                            .is_some_and(|r| r.logic.is_none() && !r.readers.contains(&id))
                    })
                    .collect();
                let to_rooms: Vec<&String> = target.rooms.iter().collect();
                may_send(&from_rooms, &to_rooms)
            }
            _ => false,
        };
        if !shares_room {
            return Err(RequestError::UnknownSession(to));
        }
        self.send_to(
            to,
            &ServerFrame::Direct(DirectFrame {
                from: id,
                event,
                data,
            }),
        );
        Ok(Answered::No)
    }

    /// Refuses a reader's write (`read_only`).
    pub(super) fn check_writer(&self, id: SessionId, room_name: &str) -> Result<(), RequestError> {
        if self
            .rooms
            .get(room_name)
            .is_some_and(|r| r.readers.contains(&id))
        {
            return Err(RequestError::ReadOnly(room_name.to_owned()));
        }
        Ok(())
    }

    /// The room `room_name` when `id` is one of its members.
    pub(super) fn member_room(
        &mut self,
        id: SessionId,
        room_name: &str,
    ) -> Result<&mut Room<O>, RequestError> {
        let is_member = self
            .sessions
            .get(&id)
            .is_some_and(|e| e.rooms.iter().any(|r| r == room_name));
        match self.rooms.get_mut(room_name) {
            Some(room) if is_member => Ok(room),
            _ => Err(RequestError::NotInRoom(room_name.to_owned())),
        }
    }

    /// The room `room_name` when `id` is its owner.
    pub(super) fn owned_room(
        &mut self,
        id: SessionId,
        room_name: &str,
    ) -> Result<&mut Room<O>, RequestError> {
        self.limits.check_room_name(room_name)?;
        let room = self.member_room(id, room_name)?;
        if room.logic.is_some() {
            return Err(RequestError::LogicOnly(room_name.to_owned()));
        }
        let owner = room.owner;
        self.check_writer(id, room_name)?;
        let room = self.member_room(id, room_name)?;
        if owner != Some(id) {
            return Err(RequestError::NotOwner(room_name.to_owned()));
        }
        Ok(room)
    }

    pub(super) fn set_lock(
        &mut self,
        id: SessionId,
        room_name: &str,
        locked: bool,
    ) -> Result<Answered, RequestError> {
        let room = self.owned_room(id, room_name)?;
        room.locked_by_hand = locked;
        self.announce_room_update(room_name, None);
        self.room_changed(room_name);
        Ok(Answered::No)
    }

    pub(super) fn kick(
        &mut self,
        id: SessionId,
        room_name: &str,
        target: SessionId,
    ) -> Result<Answered, RequestError> {
        let room = self.owned_room(id, room_name)?;
        if !room.is_member(target) {
            return Err(RequestError::UnknownSession(target));
        }
        self.drop_membership(target, room_name, LeaveReason::Kicked)?;
        Ok(Answered::No)
    }

    pub(super) fn set_metadata(
        &mut self,
        id: SessionId,
        room_name: &str,
        metadata: Metadata,
    ) -> Result<Answered, RequestError> {
        self.limits.check_metadata(&metadata)?;
        let room = self.owned_room(id, room_name)?;
        room.metadata = metadata;
        self.announce_room_update(room_name, None);
        self.room_changed(room_name);
        Ok(Answered::No)
    }

    /// Tells the room's members (all but `skip`) its owner, lock and metadata as they are now.
    pub(super) fn announce_room_update(&mut self, room_name: &str, skip: Option<SessionId>) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let (owner, locked, locked_by_owner, metadata) = (
            room.owner,
            room.is_locked(),
            room.locked_by_hand,
            room.metadata.clone(),
        );
        self.broadcast(room_name, skip, |offset| {
            ServerFrame::RoomUpdate(RoomUpdateFrame {
                room: room_name.to_owned(),
                owner,
                locked,
                locked_by_owner,
                metadata,
                offset,
            })
        });
    }

    /// Notes for the lobby that a public room changed.
    pub(super) fn room_changed(&mut self, room_name: &str) {
        self.touch(room_name);
        if self.rooms.get(room_name).is_some_and(|r| !r.private) {
            self.lobby.changed(room_name);
        }
    }

    /// Takes `id` out of `room_name`'s members and tells the others. An owner leaving hands
    /// the room to the oldest member; an empty room is dropped unless it was made to stay.
    /// The caller has already removed the room from the session's own list.
    pub(super) fn remove_member(&mut self, room_name: &str, id: SessionId, reason: LeaveReason) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let before = (room.owner, room.is_locked());
        if !room.remove(id) {
            return;
        }
        if room.members.is_empty() {
            if room.dispose_when_empty {
                self.logic_left(room_name, id, reason);
                self.remove_room(room_name);
            } else {
                // Nobody is left to hear held patches; the state already holds them.
                room.pending_patches.clear();
                room.pending_bytes = 0;
                self.room_changed(room_name);
                self.logic_left(room_name, id, reason);
            }
            return;
        }
        let after = (room.owner, room.is_locked());
        if self.closing {
            return;
        }
        let user = self.user_of(id);
        // Not for the member who left (a cluster node hands room frames to its members until
        // it hears they left).
        self.broadcast(room_name, Some(id), |offset| {
            ServerFrame::Presence(PresenceFrame {
                room: room_name.to_owned(),
                session: id,
                status: PresenceStatus::Left,
                reason: Some(reason),
                user,
                offset,
            })
        });
        if after != before {
            self.announce_room_update(room_name, None);
        }
        self.room_changed(room_name);
        self.logic_left(room_name, id, reason);
    }
}
