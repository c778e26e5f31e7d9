//! The edge: the sessions connected to this node. Their requests go to their rooms' homes
//! (or, a member's plain emit, straight into the room's log), one home request at a time per
//! session; what the homes send back is delivered, and the rooms it says a session joined or
//! left are followed (`LocalRooms`). A dropped session is away for its grace here, and its
//! homes are told; a resume on this node takes a session over from wherever it was.

use parlor_protocol::{
    encode_client, DirectFrame, EventFrame, LeaveReason, ResumedFrame, ResumedRoom, RoomPosition,
};

use super::*;
use crate::cluster::fanout::Fill;
use crate::cluster::store::{ForSession, Forwarded, RoomMessage};
use crate::registry::{can_join, graces_over, holds_seats};

/// A session connected to this node.
pub(super) struct Local<O> {
    /// `None` while away.
    pub(super) outlet: Option<O>,
    connection: SessionId,
    pub(super) profile: Profile,
    /// The rooms it is in, as their homes said.
    pub(super) rooms: Vec<String>,
    /// Those of `rooms` that have logic, as their `joined` said (a `send` may not go through
    /// them).
    logic_rooms: Vec<String>,
    /// Joins of its under way.
    pub(super) joining: usize,
    away_since: Option<Instant>,
    /// The home request in flight; requests after it wait in `queue`.
    pub(super) busy: Option<u64>,
    queue: VecDeque<ClientFrame>,
}

/// A resume being carried out here.
#[derive(Debug)]
pub struct ResumeAsk {
    pub current: SessionId,
    pub session: SessionId,
    pub token: String,
    pub positions: Vec<RoomPosition>,
    pub reference: Option<Ref>,
}

#[derive(Debug)]
pub(super) enum ResumeStep {
    TakenOver {
        ticket: u64,
        ask: ResumeAsk,
    },
    Logged {
        ticket: u64,
        session: SessionId,
        room: String,
    },
}

/// What a resume is still waiting for.
pub(super) struct Resuming {
    session: SessionId,
    reference: Option<Ref>,
    positions: Vec<RoomPosition>,
    rooms: Vec<String>,
    /// Per room: its epoch, the offset live frames start at, and the frames to replay (or
    /// `None`: a snapshot).
    caught: HashMap<String, (String, u64, Option<Vec<Bytes>>)>,
}

impl<O: Outlet> Engine<O> {
    // ---- connections -------------------------------------------------------------------------

    pub fn connect(&mut self, id: SessionId, outlet: O, mut profile: Profile) {
        profile.node = Some(self.node.to_string());
        self.sessions.insert(
            id,
            Local {
                outlet: Some(outlet),
                connection: id,
                profile,
                rooms: Vec::new(),
                logic_rooms: Vec::new(),
                joining: 0,
                away_since: None,
                busy: None,
                queue: VecDeque::new(),
            },
        );
    }

    /// Connection `connection` of session `id` ended for `reason`: away for its grace if it
    /// holds seats (its homes are told), else gone from its rooms.
    pub fn disconnect(&mut self, id: SessionId, connection: SessionId, reason: LeaveReason) {
        let Some(local) = self.sessions.get(&id) else {
            return;
        };
        let (rooms_held, ended) = (
            !local.rooms.is_empty(),
            local.connection != connection || local.away_since.is_some(),
        );
        if ended {
            return;
        }
        self.unsubscribe_lobby(id);
        if self.closing {
            // Handed over already (`shut_down`): nothing more to say.
            self.forget_local(id);
            return;
        }
        let keep = holds_seats(
            reason,
            self.limits(),
            rooms_held,
            self.closing,
            self.away.len(),
        );
        if !keep {
            self.end_session(id, reason);
            return;
        }
        let rooms = match self.sessions.get_mut(&id) {
            Some(local) => {
                local.outlet = None;
                local.away_since = Some(self.now);
                local.queue.clear();
                local.rooms.clone()
            }
            None => return,
        };
        self.away.insert(id);
        for room in &rooms {
            self.leave_fanout(room, id);
        }
        self.tell_homes(&rooms, |rooms| NodeMessage::Away {
            session: id,
            rooms,
            handed_over: false,
        });
    }

    /// Session `id` is gone for `reason`: its homes are told, and it is forgotten here.
    pub(super) fn end_session(&mut self, id: SessionId, reason: LeaveReason) {
        let Some(local) = self.forget_local(id) else {
            return;
        };
        if local.rooms.is_empty() {
            return;
        }
        self.tell_homes(&local.rooms, |rooms| NodeMessage::Gone {
            session: id,
            rooms,
            reason,
        });
        self.call(
            Op::SessionEnd {
                session: id,
                node: None,
                orphan_for: None,
            },
            Then::Nothing,
        );
    }

    /// Forgets session `id` here (its local memberships and its place in the away set).
    fn forget_local(&mut self, id: SessionId) -> Option<Local<O>> {
        let local = self.sessions.remove(&id)?;
        self.away.remove(&id);
        self.unsubscribe_lobby(id);
        for room in &local.rooms {
            self.leave_fanout(room, id);
        }
        Some(local)
    }

    /// Tells the home of each of `rooms` what `message` says (once per home, with the rooms it
    /// is home to).
    pub(super) fn tell_homes(
        &mut self,
        rooms: &[String],
        message: impl Fn(Vec<String>) -> NodeMessage,
    ) {
        let mut by_home: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for room in rooms {
            if self.hosted.contains_key(room) {
                by_home
                    .entry(self.node.to_string())
                    .or_default()
                    .push(room.clone());
            } else if let Some(home) = self.homes.get(room) {
                by_home.entry(home.clone()).or_default().push(room.clone());
            } else {
                // A home not seen yet: found (or the room claimed) first.
                self.message_for_room(room, message(vec![room.clone()]));
            }
        }
        for (home, rooms) in by_home {
            let first = rooms.first().cloned();
            if rooms.len() == 1 {
                self.send_node(&home, message(rooms), first, None);
            } else {
                // Should that home be gone, each room finds its own.
                for room in rooms {
                    self.send_node(&home, message(vec![room.clone()]), Some(room), None);
                }
            }
        }
    }

    /// Away sessions whose grace is over leave their rooms (reason `timeout`).
    pub(super) fn expire_away(&mut self) {
        let grace = self.limits().reconnect_grace;
        let expired = graces_over(&self.away, self.now, grace, |id| {
            self.sessions.get(id).and_then(|l| l.away_since)
        });
        for id in expired {
            self.end_session(id, LeaveReason::Timeout);
        }
    }

    // ---- requests ----------------------------------------------------------------------------

    /// A request from session `id` on connection `connection`.
    pub fn request(&mut self, id: SessionId, connection: SessionId, frame: ClientFrame) {
        let Some(local) = self.sessions.get_mut(&id) else {
            return;
        };
        if local.connection != connection || local.outlet.is_none() {
            return;
        }
        if local.busy.is_some() || !local.queue.is_empty() {
            if local.queue.len() >= QUEUE_LIMIT {
                let reference = frame.reference();
                return self.send_error(id, reference, &RequestError::Overloaded);
            }
            local.queue.push_back(frame);
            return;
        }
        self.process(id, frame);
    }

    /// Serves the requests that waited behind a home request, up to the next one.
    pub(super) fn drain_queue(&mut self, id: SessionId) {
        loop {
            let Some(local) = self.sessions.get_mut(&id) else {
                return;
            };
            if local.busy.is_some() {
                return;
            }
            let Some(frame) = local.queue.pop_front() else {
                return;
            };
            self.process(id, frame);
        }
    }

    fn process(&mut self, id: SessionId, frame: ClientFrame) {
        let reference = frame.reference();
        let local_only = match &frame {
            ClientFrame::Send { to, .. } => self.sessions.contains_key(to),
            ClientFrame::UnsubscribeLobby { .. } => true,
            _ => false,
        };
        if !self.up && !local_only {
            // Nothing that needs the store can be done; nothing was.
            let err = RequestError::Unavailable("Redis is unreachable".into());
            return self.send_error(id, reference, &err);
        }
        let result = match frame {
            ClientFrame::Emit {
                room,
                event,
                data,
                echo,
                reference,
            } => self.emit(id, room, event, data, echo, reference),
            ClientFrame::Send {
                to,
                event,
                data,
                reference,
            } => self.send_direct(id, to, event, data, reference),
            ClientFrame::ListRooms { filter, limit, .. } => {
                let limit = limit.map_or(crate::registry::DEFAULT_LISTED_ROOMS, |n| n as usize);
                self.list_for(id, filter, limit, reference, false);
                Ok(())
            }
            ClientFrame::SubscribeLobby { filter, .. } => {
                let limit = self.limits().max_listed_rooms;
                self.list_for(id, filter, limit, reference, true);
                Ok(())
            }
            ClientFrame::UnsubscribeLobby { .. } => {
                self.unsubscribe_lobby(id);
                self.send_ok(id, reference);
                Ok(())
            }
            ClientFrame::JoinOrCreate {
                filter, options, ..
            } => self.join_or_create(id, filter, options, reference),
            ClientFrame::Resume { .. } => Err(RequestError::ResumeFailed(
                "resume must be the connection's first message",
            )),
            frame => self.forward_to_home(id, frame),
        };
        if let Err(err) = result {
            self.send_error(id, reference, &err);
        }
    }

    /// A member's emit, straight into the room's log: one call, whoever is the room's home.
    fn emit(
        &mut self,
        id: SessionId,
        room: String,
        event: String,
        data: parlor_protocol::Value,
        echo: bool,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_room_name(&room)?;
        self.limits().check_event_name(&event)?;
        let member = self
            .sessions
            .get(&id)
            .is_some_and(|l| l.rooms.contains(&room));
        if !member {
            return Err(RequestError::NotInRoom(room));
        }
        let writer = self
            .sessions
            .get(&id)
            .is_some_and(|l| l.profile.may_write(&room));
        if !writer {
            // A reader's emit is for the home to judge (refused in a plain room; a document's
            // logic takes its awareness): no fast path.
            return self.emit_at_home(id, reference, room, event, data, echo);
        }
        let body = encode_server(&ServerFrame::Event(EventFrame {
            room: room.clone(),
            from: id,
            event,
            data,
            offset: 0,
        }));
        self.call(
            Op::Emit {
                room: room.clone(),
                member: Some(id),
                skip: (!echo).then_some(id),
                body: body.clone(),
            },
            Then::Emitted {
                session: id,
                reference,
                room,
                body,
                echo,
            },
        );
        Ok(())
    }

    /// An emit for the room's home to take (a room with logic, or a reader's).
    fn emit_at_home(
        &mut self,
        id: SessionId,
        reference: Option<Ref>,
        room: String,
        event: String,
        data: parlor_protocol::Value,
        echo: bool,
    ) -> Result<(), RequestError> {
        let frame = ClientFrame::Emit {
            reference,
            room,
            event,
            data,
            echo,
        };
        self.forward_to_home(id, frame)
    }

    pub(super) fn on_emitted(
        &mut self,
        id: SessionId,
        reference: Option<Ref>,
        room: String,
        (body, echo): (Bytes, bool),
        reply: Result<Reply, LinkError>,
    ) {
        match reply {
            Ok(Reply::Emitted(Some(_))) => self.send_ok(id, reference),
            Ok(Reply::EmitToHome) => {
                // A room with logic: the emit is a request of its home's (read back from the
                // event this node encoded, which always decodes).
                let Ok(ServerFrame::Event(EventFrame { event, data, .. })) =
                    parlor_protocol::decode_server(&body, 128)
                else {
                    let err = RequestError::Unavailable("the event could not be read back".into());
                    return self.send_error(id, reference, &err);
                };
                if let Err(err) = self.emit_at_home(id, reference, room, event, data, echo) {
                    self.send_error(id, reference, &err);
                }
            }
            Ok(Reply::Emitted(None)) => {
                // Its home took it out meanwhile; the `left` is on its way.
                self.send_error(id, reference, &RequestError::NotInRoom(room));
            }
            Ok(_) => self.send_error(
                id,
                reference,
                &RequestError::OutcomeUnknown("an answer an emit does not take".into()),
            ),
            Err(err) => self.send_error(id, reference, &request_error(err)),
        }
    }

    fn send_direct(
        &mut self,
        id: SessionId,
        to: SessionId,
        event: String,
        data: parlor_protocol::Value,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.limits().check_event_name(&event)?;
        // A room with logic is no way around it: only a plain room shared counts.
        let from_rooms: Vec<String> = self
            .sessions
            .get(&id)
            .map(|l| {
                l.rooms
                    .iter()
                    .filter(|r| !l.logic_rooms.contains(*r) && l.profile.may_write(r))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let frame = encode_server(&ServerFrame::Direct(DirectFrame {
            from: id,
            event,
            data,
        }));
        // A target on this node is reached without the store (and while it is away).
        if let Some(target) = self.sessions.get(&to) {
            if !crate::registry::may_send(&from_rooms, &target.rooms) {
                return Err(RequestError::UnknownSession(to));
            }
            self.deliver(to, frame);
            self.send_ok(id, reference);
            return Ok(());
        }
        // Elsewhere: the store says where it is and what it is in; the rule is applied here.
        self.call(
            Op::SessionRead { session: to },
            Then::Direct {
                session: id,
                reference,
                to,
                from_rooms,
                frame,
            },
        );
        Ok(())
    }

    pub(super) fn on_direct(
        &mut self,
        id: SessionId,
        reference: Option<Ref>,
        (to, from_rooms, frame): (SessionId, Vec<String>, Bytes),
        reply: Result<Reply, LinkError>,
    ) {
        match reply {
            Ok(Reply::Session(Some((node, rooms))))
                if crate::registry::may_send(&from_rooms, &rooms) =>
            {
                // One handed over at a shutdown (on no node) hears nothing.
                if !node.is_empty() {
                    let message = NodeMessage::Direct {
                        to,
                        frame: frame.to_vec(),
                    };
                    self.send_node(&node, message, None, None);
                }
                self.send_ok(id, reference);
            }
            Ok(Reply::Session(_)) => {
                self.send_error(id, reference, &RequestError::UnknownSession(to))
            }
            Ok(_) => self.send_error(
                id,
                reference,
                &RequestError::OutcomeUnknown("an answer a send does not take".into()),
            ),
            Err(err) => self.send_error(id, reference, &request_error(err)),
        }
    }

    /// A request its room's home decides: sent there (or handled here, if this node is it),
    /// and the session waits for its answer before its next request.
    fn forward_to_home(&mut self, id: SessionId, frame: ClientFrame) -> Result<(), RequestError> {
        let Some(room) = room_of(&frame).map(str::to_owned) else {
            return Err(RequestError::InvalidOptions("no room named".into()));
        };
        self.limits().check_room_name(&room)?;
        let local = self
            .sessions
            .get(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        match &frame {
            ClientFrame::Join { room, .. }
            | ClientFrame::Create {
                room: Some(room), ..
            } => {
                can_join(
                    self.limits(),
                    &local.profile,
                    &local.rooms,
                    local.joining,
                    Some(room),
                )?;
            }
            _ => {}
        }
        let joins = matches!(frame, ClientFrame::Join { .. } | ClientFrame::Create { .. });
        let rid = self.new_forward(id, room, frame, None);
        if let Some(local) = self.sessions.get_mut(&id) {
            local.busy = Some(rid);
            if joins {
                local.joining += 1;
            }
        }
        self.send_forward(rid);
        Ok(())
    }

    pub(super) fn new_forward(
        &mut self,
        id: SessionId,
        room: String,
        frame: ClientFrame,
        matching: Option<crate::cluster::engine::find::Matching>,
    ) -> u64 {
        let rid = self.next_rid;
        self.next_rid += 1;
        self.forwards.insert(
            rid,
            Forward {
                session: id,
                room,
                frame,
                home: None,
                attempts: 0,
                matching,
                since: self.now,
                recovering: false,
            },
        );
        rid
    }

    /// The forwarded request `rid` as its home reads it.
    pub(super) fn forwarded(&self, rid: u64) -> Option<Forwarded> {
        let forward = self.forwards.get(&rid)?;
        let local = self.sessions.get(&forward.session)?;
        Some(Forwarded {
            from: self.node.to_string(),
            rid,
            session: forward.session,
            user: local.profile.user.clone(),
            claim: local.profile.rooms.as_ref().map(|p| p.sources().to_vec()),
            reading: local
                .profile
                .rooms
                .as_ref()
                .map(|p| p.reading_sources().to_vec())
                .unwrap_or_default(),
            frame: encode_client(&forward.frame).to_vec(),
            recovering: forward.recovering,
        })
    }

    /// Request `rid` is answered (or given up): the session may go on with its next.
    pub(super) fn finish_forward(&mut self, rid: u64) {
        let Some(forward) = self.forwards.remove(&rid) else {
            return;
        };
        let id = forward.session;
        if let Some(local) = self.sessions.get_mut(&id) {
            if local.busy == Some(rid) {
                local.busy = None;
            }
            if matches!(
                forward.frame,
                ClientFrame::Join { .. }
                    | ClientFrame::Create { .. }
                    | ClientFrame::JoinOrCreate { .. }
            ) {
                local.joining = local.joining.saturating_sub(1);
            }
        }
        self.drain_queue(id);
    }

    /// Request `rid` could not be carried out (or its outcome is not known): the session hears
    /// why, and goes on.
    pub(super) fn fail_forward(&mut self, rid: u64, err: RequestError) {
        let Some(forward) = self.forwards.get(&rid) else {
            return;
        };
        let (id, reference) = (forward.session, forward.frame.reference());
        self.send_error(id, reference, &err);
        self.finish_forward(rid);
    }

    pub(super) fn on_not_home(&mut self, _session: SessionId, rid: u64, room: String) {
        if self.homes.contains_key(&room) {
            self.homes.remove(&room);
        }
        let Some(forward) = self.forwards.get_mut(&rid) else {
            return;
        };
        forward.home = None;
        forward.attempts += 1;
        if forward.attempts > MAX_ROUTING_ATTEMPTS {
            let err = RequestError::Unavailable(format!("room {room:?} has no home now"));
            return self.fail_forward(rid, err);
        }
        self.send_forward(rid);
    }

    // ---- what homes send -------------------------------------------------------------------

    /// Frames a home sent a session here: delivered, and the rooms they say it joined or left
    /// followed.
    pub(super) fn on_frames(&mut self, frames: ForSession) {
        let id = frames.session;
        let Some(local) = self.sessions.get(&id) else {
            // The session ended meanwhile: a room it was just seated in must hear it left.
            for (room, _, _) in &frames.joined {
                let message = NodeMessage::Gone {
                    session: id,
                    rooms: vec![room.clone()],
                    reason: LeaveReason::Dropped,
                };
                self.message_for_room(room, message);
            }
            if let Some(rid) = frames.rid {
                self.forwards.remove(&rid);
            }
            return;
        };
        let away = local.outlet.is_none();
        let logic: Vec<(String, bool)> = frames
            .frames
            .iter()
            .filter(|frame| home::frame_kind(frame) == Some("joined"))
            .filter_map(|frame| match parlor_protocol::decode_server(frame, 128) {
                Ok(ServerFrame::Joined(joined)) => Some((joined.room, joined.room_type.is_some())),
                _ => None,
            })
            .collect();
        if let Some(local) = self.sessions.get_mut(&id) {
            for (room, has_logic) in logic {
                local.logic_rooms.retain(|r| *r != room);
                if has_logic {
                    local.logic_rooms.push(room);
                }
            }
        }
        // The frames first (a `joined` before any frame of its room that the node already
        // holds), then the rooms followed from their `joined` on, and no more after `left`.
        for frame in frames.frames {
            self.deliver(id, Bytes::from(frame.into_vec()));
        }
        for (room, epoch, offset) in &frames.joined {
            self.joined_room(id, room, epoch, *offset, away);
        }
        for room in &frames.left {
            self.left_room(id, room);
        }
        if let Some(rid) = frames.rid {
            self.finish_forward(rid);
        }
    }

    /// Session `id` is now a member of `room` (incarnation `epoch`), its frames from `offset`
    /// on.
    fn joined_room(&mut self, id: SessionId, room: &str, epoch: &str, offset: u64, away: bool) {
        let Some(local) = self.sessions.get_mut(&id) else {
            return;
        };
        if !local.rooms.iter().any(|r| r == room) {
            local.rooms.push(room.to_owned());
        }
        let token = local.profile.resume_token.clone();
        let user = local.profile.user.clone();
        if !away {
            if let Some(outlet) = local.outlet.clone() {
                self.join_fanout(room, epoch, id, outlet, offset);
            }
        }
        self.call(
            Op::SessionPut {
                session: id,
                token,
                user,
                add: vec![room.to_owned()],
                remove: Vec::new(),
            },
            Then::Nothing,
        );
    }

    fn left_room(&mut self, id: SessionId, room: &str) {
        let Some(local) = self.sessions.get_mut(&id) else {
            return;
        };
        local.rooms.retain(|r| r != room);
        local.logic_rooms.retain(|r| r != room);
        let token = local.profile.resume_token.clone();
        let user = local.profile.user.clone();
        let roomless = local.rooms.is_empty() && local.outlet.is_none();
        self.leave_fanout(room, id);
        self.call(
            Op::SessionPut {
                session: id,
                token,
                user,
                add: Vec::new(),
                remove: vec![room.to_owned()],
            },
            Then::Nothing,
        );
        // An away session kicked from its last room has nothing left to come back to.
        if roomless {
            self.forget_local(id);
        }
    }

    /// Back from an outage: whether the store still seats this node's sessions in their rooms
    /// (a node taken for dead meanwhile lost them, and the `left` sent then may never have
    /// come).
    pub(super) fn check_seats(&mut self) {
        let mut by_room: BTreeMap<String, Vec<SessionId>> = BTreeMap::new();
        for (id, local) in &self.sessions {
            for room in &local.rooms {
                by_room.entry(room.clone()).or_default().push(*id);
            }
        }
        for (room, sessions) in by_room {
            self.call(
                Op::StillMembers {
                    room: room.clone(),
                    sessions: sessions.clone(),
                },
                Then::StillMembers { room, sessions },
            );
        }
    }

    /// Back from an outage: joins sent to a home before it may have lost their answer (published
    /// while this node could not hear); each is asked again of the room's home, which answers
    /// with the room if the seat was made.
    pub(super) fn ask_joins_again(&mut self) {
        let sent: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| joins(&f.frame) && f.home.is_some())
            .map(|(rid, _)| *rid)
            .collect();
        for rid in sent {
            if let Some(forward) = self.forwards.get_mut(&rid) {
                forward.recovering = true;
                forward.home = None;
                self.reroute.push(rid);
            }
        }
    }

    /// Sessions here that the store no longer seats in `room` are told they left it
    /// (`node_lost`).
    pub(super) fn on_still_members(
        &mut self,
        room: String,
        sessions: Vec<SessionId>,
        reply: Result<Reply, LinkError>,
    ) {
        let Ok(Reply::Rooms(still)) = reply else {
            return;
        };
        for id in sessions {
            let seated = still.iter().any(|s| *s == id.to_string());
            let here = self
                .sessions
                .get(&id)
                .is_some_and(|l| l.rooms.contains(&room));
            if seated || !here {
                continue;
            }
            let left = ServerFrame::Left {
                room: room.clone(),
                reason: LeaveReason::NodeLost,
            };
            self.deliver(id, encode_server(&left));
            self.left_room(id, &room);
        }
    }

    /// Delivers a frame to a session here, if it is connected.
    pub(super) fn deliver(&mut self, id: SessionId, frame: Bytes) {
        let Some(outlet) = self.sessions.get(&id).and_then(|l| l.outlet.as_ref()) else {
            return;
        };
        let len = frame.len();
        if outlet.deliver(frame).is_ok() {
            self.metrics.sent(1, len);
        } else {
            self.evict(id);
        }
    }

    /// A session that overran its outbound budget leaves (`slow_consumer`) and is closed.
    fn evict(&mut self, id: SessionId) {
        let outlet = self.sessions.get(&id).and_then(|l| l.outlet.clone());
        self.metrics.slow_consumer_evictions.inc();
        self.end_session(id, LeaveReason::SlowConsumer);
        if let Some(outlet) = outlet {
            outlet.close(Close::Evicted(LeaveReason::SlowConsumer));
        }
    }

    /// The session resumed on another node: this one lets its connection go (4002).
    pub(super) fn session_moved(&mut self, id: SessionId) {
        if let Some(local) = self.forget_local(id) {
            if let Some(outlet) = local.outlet {
                outlet.close(Close::Replaced);
            }
        }
    }

    /// The backend removed the session: it leaves its rooms and its connection closes (4001).
    pub(super) fn session_kicked(&mut self, id: SessionId) {
        let outlet = self.sessions.get(&id).and_then(|l| l.outlet.clone());
        self.end_session(id, LeaveReason::Kicked);
        if let Some(outlet) = outlet {
            outlet.close(Close::Evicted(LeaveReason::Kicked));
        }
    }

    // ---- local rooms -------------------------------------------------------------------------

    fn join_fanout(&mut self, room: &str, epoch: &str, id: SessionId, outlet: O, from: u64) {
        let metrics = Arc::clone(&self.metrics);
        let mut overflowed = Vec::new();
        let added = self.fanout.add_member(
            room,
            epoch,
            id,
            outlet,
            from,
            &mut |to, outlet: &O, frame: &Bytes| {
                if outlet.deliver(frame.clone()).is_ok() {
                    metrics.sent(1, frame.len());
                } else {
                    overflowed.push(to);
                }
            },
        );
        if added.lost > 0 {
            self.metrics.cluster_frames_lost.inc_by(added.lost);
        }
        if let Some(old) = added.unsubscribe {
            self.out.push_back(Output::Unsubscribe {
                room: room.to_owned(),
                epoch: old,
            });
        }
        if added.subscribe {
            self.out.push_back(Output::Subscribe {
                room: room.to_owned(),
                epoch: epoch.to_owned(),
            });
        }
        for id in overflowed {
            self.evict(id);
        }
    }

    pub(super) fn leave_fanout(&mut self, room: &str, id: SessionId) {
        if let Some(epoch) = self.fanout.remove_member(room, id) {
            self.out.push_back(Output::Unsubscribe {
                room: room.to_owned(),
                epoch,
            });
        }
    }

    /// A frame on the channel of room `room`'s incarnation `epoch`.
    pub fn on_room_frame(&mut self, room: &str, epoch: &str, payload: &Bytes) {
        let messages = crate::cluster::store::parse_room_message(payload);
        self.fan(room, epoch, messages);
    }

    fn fan(&mut self, room: &str, epoch: &str, messages: Vec<RoomMessage>) {
        let metrics = Arc::clone(&self.metrics);
        let mut overflowed = Vec::new();
        let fill = self.fanout.on_frames(
            room,
            epoch,
            messages,
            &mut |to, outlet: &O, frame: &Bytes| {
                if outlet.deliver(frame.clone()).is_ok() {
                    metrics.sent(1, frame.len());
                } else {
                    overflowed.push(to);
                }
            },
        );
        if let Some(fill) = fill {
            self.fill(fill);
        }
        for id in overflowed {
            self.evict(id);
        }
    }

    /// The subscription to the channel of room `room`'s incarnation `epoch` is in place:
    /// catch up with its log.
    pub fn on_subscribed(&mut self, room: &str, epoch: &str) {
        if self.fanout.epoch_of(room) != Some(epoch) {
            return;
        }
        if let Some(fill) = self.fanout.catch_up(room) {
            self.fill(fill);
        }
    }

    pub(super) fn fill(&mut self, fill: Fill) {
        self.call(
            Op::ReadLog {
                room: fill.room.clone(),
                from: fill.from,
                to: fill.to,
            },
            Then::Fill(fill),
        );
    }

    pub(super) fn on_fill(&mut self, fill: Fill, reply: Result<Reply, LinkError>) {
        let Ok(Reply::Log {
            messages, history, ..
        }) = reply
        else {
            self.fanout.fill_failed(&fill.room);
            return;
        };
        let metrics = Arc::clone(&self.metrics);
        let lost_before = self.fanout.lost;
        let mut overflowed = Vec::new();
        let next = self.fanout.on_fill(
            &fill,
            &history,
            messages,
            &mut |to, outlet: &O, frame: &Bytes| {
                if outlet.deliver(frame.clone()).is_ok() {
                    metrics.sent(1, frame.len());
                } else {
                    overflowed.push(to);
                }
            },
        );
        let lost = self.fanout.lost - lost_before;
        if lost > 0 {
            self.metrics.cluster_frames_lost.inc_by(lost);
        }
        if let Some(next) = next {
            self.fill(next);
        }
        for id in overflowed {
            self.evict(id);
        }
    }

    // ---- resume ------------------------------------------------------------------------------

    /// A connection asks to become session `ask.session`; answered (`Asked::Resumed`) with
    /// the ticket returned.
    pub fn resume(&mut self, ask: ResumeAsk) -> u64 {
        let ticket = self.ticket();
        let fresh = self.sessions.get(&ask.current);
        let refused = |why: &'static str| RequestError::ResumeFailed(why);
        let err = match fresh {
            None => Some(refused("this connection has ended")),
            Some(_) if ask.current == ask.session => Some(refused("no such session to resume")),
            Some(_) if !self.up => Some(RequestError::Unavailable("Redis is unreachable".into())),
            Some(local) if !local.rooms.is_empty() || local.busy.is_some() => Some(refused(
                "resume must come before any join or lobby subscription",
            )),
            Some(_) => None,
        };
        if let Some(err) = err {
            self.metrics.resume(crate::metrics::ResumeOutcome::Refused);
            self.send_error(ask.current, ask.reference, &err);
            self.answer(ticket, Asked::Resumed(None));
            return ticket;
        }
        let user = fresh.and_then(|l| l.profile.user.clone());
        self.call(
            Op::TakeOver {
                session: ask.session,
                token: ask.token.clone(),
                user,
            },
            Then::Resume(ResumeStep::TakenOver { ticket, ask }),
        );
        ticket
    }

    pub(super) fn on_resume_step(&mut self, step: ResumeStep, reply: Result<Reply, LinkError>) {
        match step {
            ResumeStep::TakenOver { ticket, ask } => self.on_taken_over(ticket, ask, reply),
            ResumeStep::Logged {
                ticket,
                session,
                room,
            } => self.on_resume_log(ticket, session, room, reply),
        }
    }

    fn on_taken_over(&mut self, ticket: u64, ask: ResumeAsk, reply: Result<Reply, LinkError>) {
        let refused = match reply {
            Ok(Reply::TakenOver(Some((old, rooms)))) => {
                return self.take_session(ticket, ask, old, rooms)
            }
            Ok(Reply::TakenOver(None)) => RequestError::ResumeFailed(
                "no such session to resume: unknown, expired, or the token does not match",
            ),
            Ok(_) => RequestError::OutcomeUnknown("an answer a resume does not take".into()),
            Err(err) => request_error(err),
        };
        self.metrics.resume(crate::metrics::ResumeOutcome::Refused);
        self.send_error(ask.current, ask.reference, &refused);
        self.answer(ticket, Asked::Resumed(None));
    }

    /// The store moved session `ask.session` here from node `old`: this connection becomes
    /// it, and each of its rooms is caught up.
    fn take_session(&mut self, ticket: u64, ask: ResumeAsk, old: String, rooms: Vec<String>) {
        let Some(fresh) = self.sessions.remove(&ask.current) else {
            self.answer(ticket, Asked::Resumed(None));
            return;
        };
        let session = ask.session;
        // The session's old connection, here or elsewhere, lets go.
        let mut logic_rooms = Vec::new();
        if let Some(previous) = self.forget_local(session) {
            logic_rooms = previous.logic_rooms;
            if let Some(outlet) = previous.outlet {
                outlet.close(Close::Replaced);
            }
        }
        if !old.is_empty() && old != *self.node {
            self.send_node(&old, NodeMessage::Moved { session }, None, None);
        }
        let profile = Profile {
            resume_token: ask.token.clone(),
            ..fresh.profile
        };
        self.sessions.insert(
            session,
            Local {
                outlet: fresh.outlet,
                connection: fresh.connection,
                profile,
                rooms: rooms.clone(),
                logic_rooms,
                joining: 0,
                away_since: None,
                busy: None,
                queue: VecDeque::new(),
            },
        );
        self.resuming.insert(
            ticket,
            Resuming {
                session,
                reference: ask.reference,
                positions: ask.positions.clone(),
                rooms: rooms.clone(),
                caught: HashMap::new(),
            },
        );
        if rooms.is_empty() {
            return self.finish_resume(ticket);
        }
        for room in rooms {
            let from = ask
                .positions
                .iter()
                .find(|p| p.room == room)
                .map_or(u64::MAX, |p| p.offset);
            self.call(
                Op::ReadLog {
                    room: room.clone(),
                    from: if from == u64::MAX { 0 } else { from },
                    to: None,
                },
                Then::Resume(ResumeStep::Logged {
                    ticket,
                    session,
                    room,
                }),
            );
        }
    }

    fn on_resume_log(
        &mut self,
        ticket: u64,
        session: SessionId,
        room: String,
        reply: Result<Reply, LinkError>,
    ) {
        let position = self
            .resuming
            .get(&ticket)
            .and_then(|state| state.positions.iter().find(|p| p.room == room).cloned());
        let budget = self.limits().replay_budget_bytes;
        let caught = match reply {
            Ok(Reply::Log {
                exists: true,
                history,
                next,
                messages,
            }) => {
                // Where the client was, if in this incarnation of the room.
                let from = position
                    .as_ref()
                    .filter(|p| p.epoch == history)
                    .map(|p| p.offset);
                // Recovered only if the log still holds every frame from the position on.
                let complete = match (from, messages.first()) {
                    (Some(from), Some(first)) => first.offset == from,
                    (Some(from), None) => from == next,
                    (None, _) => false,
                };
                let frames: Vec<Bytes> = messages
                    .into_iter()
                    .filter(|m| m.skip != Some(session))
                    .map(|m| m.frame)
                    .collect();
                let bytes: usize = frames.iter().map(Bytes::len).sum();
                let replay = (complete && bytes <= budget).then_some(frames);
                Some((history, next, replay))
            }
            _ => None,
        };
        let done = {
            let Some(state) = self.resuming.get_mut(&ticket) else {
                return;
            };
            match caught {
                Some((epoch, next, replay)) => {
                    state.caught.insert(room.clone(), (epoch, next, replay));
                }
                None => {
                    // The room is gone, or its log unreadable: it is not listed.
                    state.rooms.retain(|r| r != &room);
                }
            }
            state.caught.len() == state.rooms.len()
        };
        if done {
            self.finish_resume(ticket);
        }
    }

    /// Every room is read: `resumed`, the replays, then the session is back in its rooms (its
    /// homes told, snapshots asked for where the log did not reach back).
    fn finish_resume(&mut self, ticket: u64) {
        let Some(state) = self.resuming.remove(&ticket) else {
            return;
        };
        let session = state.session;
        let mut rooms_info = Vec::new();
        let mut snapshots = Vec::new();
        let mut replays = Vec::new();
        for room in &state.rooms {
            let Some((epoch, next, replay)) = state.caught.get(room) else {
                continue;
            };
            let recovered = replay.is_some();
            if !recovered {
                snapshots.push(room.clone());
            }
            rooms_info.push(ResumedRoom {
                room: room.clone(),
                epoch: epoch.clone(),
                offset: *next,
                recovered,
            });
            replays.push((room.clone(), epoch.clone(), *next, replay.clone()));
        }
        if let Some(local) = self.sessions.get_mut(&session) {
            local.rooms = rooms_info.iter().map(|r| r.room.clone()).collect();
        }
        self.send_frame(
            session,
            &ServerFrame::Resumed(ResumedFrame {
                reference: state.reference,
                session,
                rooms: rooms_info,
            }),
        );
        let outlet = self.sessions.get(&session).and_then(|l| l.outlet.clone());
        for (room, epoch, next, replay) in replays {
            if let Some(frames) = replay {
                for frame in frames {
                    self.deliver(session, frame);
                }
                if let Some(outlet) = outlet.clone() {
                    self.join_fanout(&room, &epoch, session, outlet, next);
                }
            }
        }
        self.metrics.resume(if snapshots.is_empty() {
            crate::metrics::ResumeOutcome::Replayed
        } else {
            crate::metrics::ResumeOutcome::Snapshot
        });
        let rooms: Vec<String> = self
            .sessions
            .get(&session)
            .map(|l| l.rooms.clone())
            .unwrap_or_default();
        let node = self.node.to_string();
        self.tell_homes(&rooms, |rooms| NodeMessage::Back {
            session,
            snapshots: rooms
                .iter()
                .filter(|r| snapshots.contains(r))
                .cloned()
                .collect(),
            rooms,
            node: node.clone(),
        });
        self.answer(ticket, Asked::Resumed(Some(session)));
    }

    // ---- the lobby -------------------------------------------------------------------------

    pub(super) fn unsubscribe_lobby(&mut self, id: SessionId) {
        if self.lobby.unsubscribe(id) && !self.lobby.has_subscribers() && self.lobby_listening {
            self.lobby_listening = false;
            self.out.push_back(Output::Lobby(false));
        }
    }
}

/// Requests one session may have waiting behind a home request before more are refused.
const QUEUE_LIMIT: usize = 1024;
/// How often a request may find its room's home moved before it is refused.
const MAX_ROUTING_ATTEMPTS: u32 = 8;
