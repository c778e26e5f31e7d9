//! Requests from this node's sessions: each check that needs no room is made here, the rest
//! is one call to Redis whose answer (`ok`, `error`, `joined`) goes back to the session.

use super::*;

impl ClusterActor {
    // ---- requests --------------------------------------------------------------------------

    pub(super) fn handle_request(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        frame: ClientFrame,
    ) {
        let reference = frame.reference();
        let result = match frame {
            ClientFrame::Join {
                room,
                password,
                create,
                ..
            } => self.join(ctx, id, room, password, create, reference),
            ClientFrame::Create { room, options, .. } => {
                self.create(ctx, id, room, options, reference)
            }
            ClientFrame::JoinOrCreate {
                filter, options, ..
            } => self.join_or_create(ctx, id, filter, options, reference),
            ClientFrame::Leave { room, .. } => self.leave(ctx, id, room, reference),
            ClientFrame::Emit {
                room,
                event,
                data,
                echo,
                ..
            } => self.emit(ctx, id, room, event, data, echo, reference),
            ClientFrame::Send {
                to, event, data, ..
            } => self.send_direct(ctx, id, to, event, data, reference),
            ClientFrame::Lock { room, .. } => self.owner_op(ctx, id, room, reference, |cmd| {
                cmd.arg("lock");
            }),
            ClientFrame::Unlock { room, .. } => self.owner_op(ctx, id, room, reference, |cmd| {
                cmd.arg("unlock");
            }),
            ClientFrame::Kick { room, session, .. } => {
                self.owner_op(ctx, id, room, reference, |cmd| {
                    cmd.arg("kick").arg(session.to_string());
                })
            }
            ClientFrame::SetMetadata { room, metadata, .. } => {
                self.set_metadata(ctx, id, room, metadata, reference)
            }
            ClientFrame::ListRooms { filter, limit, .. } => {
                let limit = limit
                    .map_or(DEFAULT_LISTED_ROOMS, |n| n as usize)
                    .min(self.limits().max_listed_rooms);
                self.list_for(ctx, id, filter, limit, reference, false);
                Ok(())
            }
            ClientFrame::SubscribeLobby { filter, .. } => {
                let limit = self.limits().max_listed_rooms;
                self.list_for(ctx, id, filter, limit, reference, true);
                Ok(())
            }
            ClientFrame::UnsubscribeLobby { .. } => {
                self.unsubscribe_lobby(id);
                self.send_ok(ctx, id, reference);
                Ok(())
            }
            ClientFrame::UpdateState {
                room,
                ops,
                if_version,
                ..
            } => self.update_state(ctx, id, room, ops, if_version, reference),
            ClientFrame::Resume { .. } => Err(RequestError::ResumeFailed(
                "resume must come before any join or lobby subscription",
            )),
        };
        if let Err(err) = result {
            self.send_error(ctx, id, reference, &err);
        }
    }

    pub(super) fn session(&self, id: SessionId) -> Result<&LocalSession, RequestError> {
        self.sessions
            .get(&id)
            .ok_or(RequestError::UnknownSession(id))
    }

    pub(super) fn check_can_join(
        &self,
        id: SessionId,
        room: Option<&str>,
    ) -> Result<(), RequestError> {
        let session = self.session(id)?;
        if let Some(room) = room {
            if session.rooms.iter().any(|r| r == room) {
                return Err(RequestError::AlreadyJoined(room.to_owned()));
            }
            if session
                .profile
                .rooms
                .as_ref()
                .is_some_and(|p| !p.allows(room))
            {
                return Err(RequestError::Forbidden(room.to_owned()));
            }
        }
        let max = self.limits().max_rooms_per_session;
        if session.rooms.len() + session.joining >= max {
            return Err(RequestError::TooManyRooms { max });
        }
        if !self.is_up() {
            return Err(RequestError::Unavailable("Redis is unreachable".into()));
        }
        Ok(())
    }

    /// The arguments that say who is joining: id, resume token, user.
    pub(super) fn who(&self, cmd: &mut redis::Cmd, id: SessionId) {
        let profile = self.sessions.get(&id).map(|s| &s.profile);
        cmd.arg(id.to_string())
            .arg(profile.map_or("", |p| p.resume_token.as_str()))
            .arg(profile.and_then(|p| p.user.as_deref()).unwrap_or(""));
    }

    pub(super) fn rules(cmd: &mut redis::Cmd, rules: &RoomRules) {
        for arg in wire::rules_args(rules) {
            cmd.arg(arg);
        }
    }

    pub(super) fn join(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: String,
        password: Option<String>,
        create: bool,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_room_name(&room)?;
        self.check_can_join(id, Some(&room))?;
        let mut cmd = self.function("parlor_join");
        self.who(&mut cmd, id);
        cmd.arg(&room)
            .arg(password.map(|p| format!("={p}")).unwrap_or_default())
            .arg(self.limits().max_rooms);
        Self::rules(&mut cmd, &self.limits().default_rules());
        cmd.arg(u8::from(create));
        self.seat(ctx, id, cmd, reference);
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: Option<String>,
        options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        let room = match room {
            Some(room) => {
                self.limits().check_room_name(&room)?;
                room
            }
            None => new_room_id(),
        };
        let rules = self.limits().rules_from(options)?;
        self.check_can_join(id, Some(&room))?;
        let mut cmd = self.function("parlor_create");
        self.who(&mut cmd, id);
        cmd.arg(&room).arg(self.limits().max_rooms);
        Self::rules(&mut cmd, &rules);
        for arg in wire::metadata_pairs(&rules.metadata) {
            cmd.arg(arg);
        }
        self.seat(ctx, id, cmd, reference);
        Ok(())
    }

    pub(super) fn join_or_create(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        filter: RoomFilter,
        mut options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        // As on one node: the room made here must match the same filter next time.
        if let Some(mode) = &filter.mode {
            options
                .metadata
                .insert("mode".to_owned(), Value::from(mode.as_str()));
        }
        options.metadata.extend(filter.metadata.clone());
        let rules = self.limits().rules_from(options)?;
        self.check_can_join(id, None)?;
        let new_room = new_room_id();
        let Some(patterns) = self.session(id)?.profile.rooms.clone() else {
            self.find_or_make(ctx, id, filter, rules, None, Some(new_room), reference);
            return Ok(());
        };
        // A token's rooms claim is checked here, in Rust, as on one node: Redis gets the
        // open rooms the claim allows, and may make a new room only if the claim allows its
        // name.
        let may_make = patterns.allows(&new_room).then_some(new_room.clone());
        let index = self.settings.link.open_index(filter.mode.as_deref());
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(index).arg(0).arg(-1);
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let open = match reply.map(|r| wire::texts(&r)) {
                Ok(Some(open)) => open,
                Ok(None) => {
                    let err = RequestError::Unavailable("an unreadable room index".into());
                    return actor.send_error(ctx, id, reference, &err);
                }
                // Only read: nothing was done either way.
                Err(err) => {
                    let err = RequestError::Unavailable(err.to_string());
                    return actor.send_error(ctx, id, reference, &err);
                }
            };
            let allowed: Vec<String> = open.into_iter().filter(|r| patterns.allows(r)).collect();
            if allowed.is_empty() && may_make.is_none() {
                return actor.send_error(ctx, id, reference, &RequestError::Forbidden(new_room));
            }
            actor.find_or_make(ctx, id, filter, rules, Some(allowed), may_make, reference);
        });
        Ok(())
    }

    /// Seats `id` in the fullest open room matching `filter` among `allowed` (`None`: any),
    /// or in a new room `new_room` made with `rules` (`None`: none may be made).
    #[allow(clippy::too_many_arguments)]
    fn find_or_make(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        filter: RoomFilter,
        rules: RoomRules,
        allowed: Option<Vec<String>>,
        new_room: Option<String>,
        reference: Option<Ref>,
    ) {
        let mut cmd = self.function("parlor_match");
        self.who(&mut cmd, id);
        cmd.arg(new_room.unwrap_or_default())
            .arg(self.limits().max_rooms);
        Self::rules(&mut cmd, &rules);
        cmd.arg(filter.mode.clone().unwrap_or_default());
        cmd.arg(filter.metadata.len());
        for arg in wire::metadata_pairs(&filter.metadata) {
            cmd.arg(arg);
        }
        match &allowed {
            None => {
                cmd.arg(-1);
            }
            Some(rooms) => {
                cmd.arg(rooms.len());
                for room in rooms {
                    cmd.arg(room);
                }
            }
        }
        for arg in wire::metadata_pairs(&rules.metadata) {
            cmd.arg(arg);
        }
        self.seat(ctx, id, cmd, reference);
    }

    /// Runs a join, create or matchmaking call; on success the session gets `joined` and `ok`
    /// and becomes a local member of the room.
    pub(super) fn seat(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        cmd: redis::Cmd,
        reference: Option<Ref>,
    ) {
        let connection = match self.sessions.get_mut(&id) {
            Some(session) => {
                session.joining += 1;
                session.connection
            }
            None => return,
        };
        self.run_request(ctx, cmd, move |actor, ctx, result| {
            let still_here = match actor.sessions.get_mut(&id) {
                Some(session) if session.connection == connection => {
                    session.joining -= 1;
                    session.outlet.is_some()
                }
                _ => false,
            };
            let snapshot = match result.and_then(|rest| {
                // The seat was taken; only its answer is unreadable.
                Snapshot::parse(&rest).map_err(|e| RequestError::OutcomeUnknown(e.to_string()))
            }) {
                Ok(snapshot) => snapshot,
                Err(err) => {
                    if still_here {
                        actor.send_error(ctx, id, reference, &err);
                    }
                    return;
                }
            };
            if !still_here {
                // The connection ended while Redis seated it: give the seat back.
                let mut cmd = actor.function("parlor_leave");
                cmd.arg(id.to_string())
                    .arg(&snapshot.room)
                    .arg(LeaveReason::Closed.as_str());
                actor.run(ctx, cmd, |_, _, _| {});
                return;
            }
            actor.admitted(ctx, id, snapshot, reference);
        });
    }

    pub(super) fn admitted(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        snapshot: Snapshot,
        reference: Option<Ref>,
    ) {
        let room = snapshot.room.clone();
        if let Some(session) = self.sessions.get_mut(&id) {
            session.rooms.push(room.clone());
        }
        self.states
            .insert(room.clone(), (snapshot.state.clone(), snapshot.version));
        self.send_to(ctx, id, &ServerFrame::Joined(snapshot.joined(reference)));
        self.send_ok(ctx, id, reference);
        self.attach(ctx, &room, id, snapshot.offset);
    }

    /// Makes `id` a local member of `room` from `from` on, subscribing when the room is new
    /// here. A session with no outlet (away) is not attached.
    pub(super) fn attach(&mut self, ctx: &mut Context<Self>, room: &str, id: SessionId, from: u64) {
        let Some(outlet) = self.sessions.get(&id).and_then(|s| s.outlet.clone()) else {
            return;
        };
        let mut handout = Handout::default();
        let lost_before = self.rooms.lost;
        let added = self.rooms.add_member(
            room,
            id,
            outlet,
            from,
            &mut |to, outlet: &SessionOutlet, frame: &Bytes| handout.give(to, outlet, frame),
        );
        self.note_lost(lost_before);
        self.settle(ctx, handout);
        if added.subscribe {
            if let Some(link) = &self.link {
                link.subscribe(self.settings.link.room_channel(room));
            }
        }
    }

    pub(super) fn leave(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: String,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_room_name(&room)?;
        if !self.session(id)?.rooms.contains(&room) {
            return Err(RequestError::NotInRoom(room));
        }
        let mut cmd = self.function("parlor_leave");
        cmd.arg(id.to_string())
            .arg(&room)
            .arg(LeaveReason::Leave.as_str());
        self.run_request(ctx, cmd, move |actor, ctx, result| {
            match result {
                Ok(_) | Err(RequestError::NotInRoom(_)) => {}
                Err(err) => return actor.send_error(ctx, id, reference, &err),
            }
            let Some(session) = actor.sessions.get_mut(&id) else {
                return;
            };
            let before = session.rooms.len();
            session.rooms.retain(|r| *r != room);
            if session.rooms.len() < before {
                actor.leave_locally(&room, id);
                actor.send_to(
                    ctx,
                    id,
                    &ServerFrame::Left {
                        room,
                        reason: LeaveReason::Leave,
                    },
                );
            }
            actor.send_ok(ctx, id, reference);
        });
        Ok(())
    }

    pub(super) fn check_member(&self, id: SessionId, room: &str) -> Result<(), RequestError> {
        self.limits().check_room_name(room)?;
        if !self.session(id)?.rooms.iter().any(|r| r == room) {
            return Err(RequestError::NotInRoom(room.to_owned()));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: String,
        event: String,
        data: Value,
        echo: bool,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_event_name(&event)?;
        self.check_member(id, &room)?;
        let frame = wire::with_offset_to_fill(&ServerFrame::Event(EventFrame {
            room: room.clone(),
            from: id,
            event,
            data,
            offset: 0,
        }));
        let skip = if echo { String::new() } else { id.to_string() };
        let mut cmd = self.function("parlor_emit");
        cmd.arg(id.to_string()).arg(&room).arg(&frame[..]).arg(skip);
        self.run_and_answer(ctx, cmd, id, reference);
        Ok(())
    }

    pub(super) fn send_direct(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        to: SessionId,
        event: String,
        data: Value,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_event_name(&event)?;
        let frame = encode_server(&ServerFrame::Direct(DirectFrame {
            from: id,
            event,
            data,
        }));
        // Two sessions of this node that share a room need no Redis (and still reach each
        // other while Redis is away); as on one node, an away target gets nothing.
        let shared_here = match (self.sessions.get(&id), self.sessions.get(&to)) {
            (Some(from), Some(target)) => from.rooms.iter().any(|r| target.rooms.contains(r)),
            _ => false,
        };
        if shared_here {
            self.deliver(ctx, to, frame);
            self.send_ok(ctx, id, reference);
            return Ok(());
        }
        let mut cmd = self.function("parlor_direct");
        cmd.arg(id.to_string()).arg(to.to_string()).arg(&frame[..]);
        self.run_and_answer(ctx, cmd, id, reference);
        Ok(())
    }

    pub(super) fn owner_op(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: String,
        reference: Option<Ref>,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<(), RequestError> {
        self.check_member(id, &room)?;
        let mut cmd = self.function("parlor_owner");
        cmd.arg(id.to_string()).arg(&room);
        args(&mut cmd);
        self.run_and_answer(ctx, cmd, id, reference);
        Ok(())
    }

    pub(super) fn set_metadata(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: String,
        metadata: Metadata,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_metadata(&metadata)?;
        self.owner_op(ctx, id, room, reference, |cmd| {
            cmd.arg("meta")
                .arg(&parlor_protocol::encode_value(&metadata)[..])
                .arg(wire::mode_of(&metadata));
            for arg in wire::metadata_pairs(&metadata) {
                cmd.arg(arg);
            }
        })
    }
}
