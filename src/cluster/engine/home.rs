//! The home: rooms this node is home to. Requests for them run in the hosting `Registry`;
//! what a call changed goes to the store as one fenced commit per room, and only once every
//! commit of the call is in does anyone hear of it (its requester included), so nothing
//! acknowledged is lost if this node dies. Leases are renewed; a home that cannot renew in
//! time stops deciding before another node may claim the room. A room whose home died, or
//! whose lease ran out, is claimed by the next node that needs it and restored from its
//! checkpoint, with the same history epoch and offsets going on.

use parlor_protocol::{decode_client, decode_server, Document, JoinedFrame};

use super::*;
use crate::cluster::store::{Claimed, Commit, ForSession, Forwarded, IndexEntry, Lease, NewRoom};
use crate::registry::{HostEffects, RoomCheckpoint, RoomPatterns};

/// A room this node is home to.
pub(super) struct Hosted {
    pub(super) epoch: u64,
    /// The members the store's set holds, as last committed.
    members: HashSet<SessionId>,
    /// The state version last committed.
    version: u64,
    /// Until when this node may decide for the room: a lease renewal's send time plus the
    /// lease's length, less a margin; past it the room is dropped (another node may claim it).
    pub(super) valid_until: Instant,
    renewing: bool,
    /// The listing last put in the index (`None`: none since this node became home).
    listed: Option<Listing>,
}

/// Who a hosting call answers.
#[derive(Debug, Clone)]
pub(super) enum Origin {
    /// A request forwarded by node `from` (this node's own, `from` its name).
    Request {
        from: String,
        rid: u64,
        session: SessionId,
        reference: Option<Ref>,
    },
    /// Nobody in particular (a member away or gone, a restore).
    None,
}

/// One hosting call's commits, waiting for the store, and what it sent members meanwhile.
pub(super) struct Batch {
    id: u64,
    origin: Origin,
    waiting: usize,
    sunk: Vec<Sunk>,
    /// Per room: the registry's provisional next offset after the call, and how far the
    /// store's offsets turned out ahead of it.
    rooms: HashMap<String, (u64, Option<u64>)>,
    failure: Option<RequestError>,
}

/// Part of a lease kept back, so that a home stops deciding before its lease runs out by the
/// store's clock.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

impl<O: Outlet> Engine<O> {
    // ---- routing a request to its home ----------------------------------------------------

    /// Sends forwarded request `rid` to its room's home, finding the home first if needed.
    pub(super) fn send_forward(&mut self, rid: u64) {
        let Some(forward) = self.forwards.get(&rid) else {
            return;
        };
        let room = forward.room.clone();
        let matching = forward.matching.as_ref().map(|m| m.room.clone());
        if self.hosted.contains_key(&room) {
            let Some(forwarded) = self.forwarded(rid) else {
                return;
            };
            return self.on_forwarded(forwarded, matching);
        }
        if let Some(home) = self.homes.get(&room).cloned() {
            if let Some(forward) = self.forwards.get_mut(&rid) {
                forward.home = Some(home.clone());
            }
            let Some(forwarded) = self.forwarded(rid) else {
                return;
            };
            let message = match matching {
                Some(room) => NodeMessage::Match { forwarded, room },
                None => NodeMessage::Request(forwarded),
            };
            return self.send_node(&home, message, Some(room), Some(rid));
        }
        let (create, fresh) = self.creates(rid);
        let then = Then::ClaimFor {
            rid,
            room: room.clone(),
        };
        self.claim(room, create, fresh, then);
    }

    /// Claims room `room` (`then` says what for). One claim per room is under way at a time:
    /// a second waits for the first and is then looked at again, so that this node never
    /// takes a room over twice (its second lease would fence off its own first).
    fn claim(&mut self, room: String, create: Option<NewRoom>, fresh: bool, then: Then) {
        if let Some((_, waiting)) = self.claiming.get_mut(&room) {
            waiting.push(then);
            return;
        }
        self.claiming.insert(room.clone(), (self.now, Vec::new()));
        self.call(
            Op::Claim {
                room,
                create,
                fresh,
            },
            then,
        );
    }

    /// Room `room`'s claim is answered: what waited for it is looked at again.
    pub(super) fn claimed(&mut self, room: &str) {
        let waiting = self
            .claiming
            .remove(room)
            .map(|(_, w)| w)
            .unwrap_or_default();
        for then in waiting {
            match then {
                Then::ClaimFor { rid, .. } => self.send_forward(rid),
                Then::ClaimForMessage { room, message } => self.message_for_room(&room, *message),
                Then::TakeOver { room }
                    if !self.hosted.contains_key(&room)
                        && self
                            .homes
                            .get(&room)
                            .is_none_or(|home| self.dead.contains(home)) =>
                {
                    self.takeovers.insert(room);
                }
                _ => {}
            }
        }
    }

    /// What a claim for request `rid` may make: a room, if the request makes one where there
    /// is none (`join`, `create`, a matchmaker's new room), and only that (`create`).
    fn creates(&self, rid: u64) -> (Option<NewRoom>, bool) {
        let Some(forward) = self.forwards.get(&rid) else {
            return (None, false);
        };
        let placeholder = || {
            let rules = self.limits().default_rules();
            let checkpoint = RoomCheckpoint {
                max_members: rules.max_members as u32,
                private: rules.private,
                password: None,
                metadata: rules.metadata,
                dispose_when_empty: true,
                locked_by_hand: false,
                owner: None,
                members: Vec::new(),
                created: 0,
                version: 0,
                epoch: String::new(),
                room_type: None,
                type_options: parlor_protocol::Value::Nil,
                logic: None,
                logic_from: None,
            };
            Some(NewRoom {
                checkpoint: parlor_protocol::encode_value(&checkpoint),
                state: parlor_protocol::encode_value(&Document::new()),
                epoch: String::new(),
            })
        };
        if forward.recovering {
            // The room was there when it was asked for first: it is not made again.
            return (None, false);
        }
        match &forward.frame {
            ClientFrame::Join { create: true, .. } => (placeholder(), false),
            ClientFrame::Create { .. } => (placeholder(), true),
            ClientFrame::JoinOrCreate { .. }
                if forward.matching.as_ref().is_some_and(|m| m.create) =>
            {
                (placeholder(), true)
            }
            _ => (None, false),
        }
    }

    pub(super) fn on_claim_for(&mut self, rid: u64, reply: Result<Reply, LinkError>) {
        let Some(forward) = self.forwards.get(&rid) else {
            return;
        };
        let room = forward.room.clone();
        let matching = forward.matching.clone();
        match reply {
            Ok(Reply::Claimed(Claimed::Created { epoch, now_ms })) => {
                self.become_home(&room, epoch);
                if matching.as_ref().is_some_and(|m| m.create) {
                    return self.created_for_match(rid, now_ms);
                }
                let Some(forwarded) = self.forwarded(rid) else {
                    return self.release_unmade(&room);
                };
                self.serve(forwarded, None, Some(now_ms));
            }
            Ok(Reply::Claimed(Claimed::TakenOver {
                epoch,
                checkpoint,
                state,
                next,
                since,
            })) => {
                self.restore(&room, epoch, &checkpoint, &state, next, &since);
                self.send_forward(rid);
            }
            Ok(Reply::Claimed(Claimed::Held(Lease { home, .. }))) if self.dead.contains(&home) => {
                // A dead home's lease that has not quite run out: the room is taken over at a
                // tick, and the request asks again then.
                self.takeovers.insert(room);
                if let Some(forward) = self.forwards.get_mut(&rid) {
                    forward.home = None;
                    self.reroute.push(rid);
                }
            }
            Ok(Reply::Claimed(Claimed::Held(Lease { home, .. }))) => {
                self.homes.insert(room, home);
                if let Some(forward) = self.forwards.get_mut(&rid) {
                    forward.attempts += 1;
                }
                self.send_forward(rid);
            }
            Ok(Reply::Claimed(Claimed::Exists)) if matching.is_some() => {
                // A matchmaker's new name was taken (it never is, in practice): pick again.
                self.on_match_refused_rid(rid);
            }
            Ok(Reply::Claimed(Claimed::Exists)) => {
                self.fail_forward(rid, RequestError::RoomExists(room));
            }
            Ok(Reply::Claimed(Claimed::Absent)) if matching.is_some() => {
                // The index listed a room that is gone: unlist it, and pick again.
                self.call(
                    Op::IndexPut {
                        room,
                        listing: None,
                        opens: false,
                    },
                    Then::Nothing,
                );
                self.on_match_refused_rid(rid);
            }
            Ok(Reply::Claimed(Claimed::Absent)) => {
                // No room: the rules say what that means for this request (here, without a
                // home: nothing is made, so nothing needs committing).
                let Some(forwarded) = self.forwarded(rid) else {
                    return;
                };
                self.answer_without_room(forwarded);
            }
            Ok(_) => self.fail_forward(
                rid,
                RequestError::OutcomeUnknown("an answer a claim does not take".into()),
            ),
            Err(err) => self.fail_forward(rid, request_error(err)),
        }
    }

    /// A room claimed (made) for a request that then made nothing: its keys go.
    pub(super) fn release_unmade(&mut self, room: &str) {
        if self.host.has_room(room) {
            return;
        }
        if let Some(hosted) = self.hosted.remove(room) {
            self.homes.remove(room);
            self.call(
                Op::Commit(Commit {
                    room: room.to_owned(),
                    epoch: hosted.epoch,
                    delete: true,
                    ..Commit::default()
                }),
                Then::Nothing,
            );
            self.call(
                Op::NodeRoom {
                    room: room.to_owned(),
                    add: false,
                },
                Then::Nothing,
            );
        }
    }

    /// A request for a room that does not exist, answered by the registry's rules (it is
    /// refused: nothing here makes a room without a claim).
    fn answer_without_room(&mut self, forwarded: Forwarded) {
        let Ok(frame) = decode_client(&forwarded.frame, 64) else {
            return;
        };
        let session = forwarded.session;
        let reference = frame.reference();
        let err = match &frame {
            ClientFrame::Join { room, .. } => RequestError::RoomNotFound(room.clone()),
            ClientFrame::JoinOrCreate { .. } => {
                RequestError::Unavailable("the room matchmaking picked is gone".into())
            }
            other => RequestError::NotInRoom(room_of(other).unwrap_or_default().to_owned()),
        };
        let frames = vec![encode_server(&ServerFrame::Error(ErrorFrame {
            reference,
            code: err.code(),
            message: err.to_string(),
            reason: None,
        }))];
        self.send_for_session(
            &forwarded.from,
            ForSession {
                session,
                rid: Some(forwarded.rid),
                frames: frames.into_iter().map(|f| f.to_vec().into()).collect(),
                joined: Vec::new(),
                left: Vec::new(),
            },
        );
    }

    fn become_home(&mut self, room: &str, epoch: u64) {
        // The lease runs from when the store took the claim, which is no sooner than when it
        // was sent.
        let sent = self.claiming.get(room).map_or(self.now, |(sent, _)| *sent);
        self.hosted.insert(
            room.to_owned(),
            Hosted {
                epoch,
                members: HashSet::new(),
                version: 0,
                valid_until: sent + self.cfg.node_ttl.saturating_sub(LEASE_MARGIN),
                renewing: false,
                listed: None,
            },
        );
        self.homes.insert(room.to_owned(), self.node.to_string());
        self.call(
            Op::NodeRoom {
                room: room.to_owned(),
                add: true,
            },
            Then::Nothing,
        );
    }

    /// Makes room `room` here from its checkpoint, under lease `epoch`. Members on nodes
    /// known dead leave (`node_lost`).
    pub(super) fn restore(
        &mut self,
        room: &str,
        epoch: u64,
        checkpoint: &[u8],
        state: &[u8],
        next: u64,
        since: &[bytes::Bytes],
    ) {
        let (Ok(checkpoint), Ok(state)) = (
            parlor_protocol::decode_value::<RoomCheckpoint>(checkpoint, 64),
            parlor_protocol::decode_value::<Document>(state, 128),
        ) else {
            tracing::error!("cluster: room {room:?} has an unreadable checkpoint");
            return;
        };
        self.become_home(room, epoch);
        let restored_type = checkpoint.room_type.clone();
        let members: HashSet<SessionId> = checkpoint.members.iter().map(|m| m.session).collect();
        let version = checkpoint.version;
        let sink = Rc::clone(&self.sink);
        let node = Rc::clone(&self.node);
        self.host
            .restore(room, checkpoint, state, next, since, |member| {
                let at: Rc<str> = member.node.as_deref().map_or(Rc::clone(&node), Rc::from);
                Some(HomeOutlet {
                    session: member.session,
                    node: at,
                    sink: Rc::clone(&sink),
                })
            });
        if let Some(hosted) = self.hosted.get_mut(room) {
            hosted.members = members;
            hosted.version = version;
        }
        let lost: Vec<SessionId> = self
            .dead
            .clone()
            .iter()
            .flat_map(|node| self.host.sessions_on(node))
            .collect();
        for id in lost {
            self.host.drop_lost(id);
        }
        // A room with logic goes on from its logic's snapshot; without one (or if the logic
        // does not take it back) it cannot go on, and ends (`ended`).
        if let Some(kind) = restored_type.filter(|_| !self.host.has_logic(room)) {
            self.host.end(
                room,
                &format!("its home was lost, and this {kind:?} room's game cannot be taken over"),
            );
        }
        // An empty room that goes when empty is deleted by this flush.
        self.flush_host(Origin::None);
    }

    // ---- requests at the home ---------------------------------------------------------------

    /// A request forwarded to this node (by another, or by itself) for a room homed here.
    pub(super) fn on_forwarded(&mut self, forwarded: Forwarded, matching: Option<String>) {
        self.serve(forwarded, matching, None);
    }

    /// Serves a forwarded request at its room's home: `matching`, the room a matchmaker
    /// picked; `made`, when this node has just made the room (the store's clock, ms).
    pub(super) fn serve(
        &mut self,
        forwarded: Forwarded,
        matching: Option<String>,
        made: Option<u64>,
    ) {
        let Ok(frame) = decode_client(&forwarded.frame, 64) else {
            return;
        };
        self.host.set_clock(self.now);
        let room = matching
            .clone()
            .or_else(|| room_of(&frame).map(str::to_owned))
            .unwrap_or_default();
        if self
            .hosted
            .get(&room)
            .is_some_and(|h| h.valid_until <= self.now)
        {
            // Its lease may have run out: this node decides nothing more for it.
            self.drop_lapsed_leases();
        }
        if let Some(creating) = self.creating.get_mut(&room) {
            // Made by a matchmaker here, not listed yet: it waits.
            creating.waiting.push(match matching {
                Some(room) => NodeMessage::Match { forwarded, room },
                None => NodeMessage::Request(forwarded),
            });
            return;
        }
        if !self.hosted.contains_key(&room) {
            let (from, session, rid) = (forwarded.from.clone(), forwarded.session, forwarded.rid);
            return self.send_node(
                &from,
                NodeMessage::NotHome { session, rid, room },
                None,
                None,
            );
        }
        if made.is_none() && self.host.logic_is_away(&room) {
            // Its logic is running a tick on the pool: the request waits for it.
            self.waiting_for_logic.push((forwarded, matching));
            return;
        }
        let session = forwarded.session;
        self.seat_visitor(&forwarded);
        if forwarded.recovering && joins(&frame) && self.host.is_member(&room, session) {
            // Its first home seated it and died before saying so: the room, as the answer.
            let reference = frame.reference();
            self.host.send_joined(session, &room, reference);
            let origin = Origin::Request {
                from: forwarded.from.clone(),
                rid: forwarded.rid,
                session,
                reference,
            };
            return self.flush_host(origin);
        }
        let origin = Origin::Request {
            from: forwarded.from.clone(),
            rid: forwarded.rid,
            session,
            reference: frame.reference(),
        };
        match (&frame, matching) {
            (ClientFrame::JoinOrCreate { filter, .. }, Some(room)) => {
                let reference = frame.reference();
                if self
                    .host
                    .match_join(session, &room, filter, reference)
                    .is_err()
                {
                    self.host.forget_if_roomless(session);
                    self.sink.borrow_mut().clear();
                    let _ = self.host.take_effects();
                    return self.send_node(
                        &forwarded.from,
                        NodeMessage::MatchRefused {
                            session,
                            rid: forwarded.rid,
                        },
                        None,
                        None,
                    );
                }
            }
            _ => self.host.handle(session, frame),
        }
        if let Some(created) = made {
            self.host.stamp(&room, created);
        }
        self.host.forget_if_roomless(session);
        self.flush_host(origin);
        if made.is_some() {
            self.release_unmade(&room);
        }
    }

    /// The hosting registry knows the session a forwarded request comes from.
    pub(super) fn seat_visitor(&mut self, forwarded: &Forwarded) {
        let profile = Profile {
            resume_token: String::new(),
            user: forwarded.user.clone(),
            rooms: forwarded
                .claim
                .as_deref()
                .map(|claim| RoomPatterns::new(claim).reading(&forwarded.reading)),
            node: Some(forwarded.from.clone()),
        };
        let outlet = HomeOutlet {
            session: forwarded.session,
            node: Rc::from(forwarded.from.as_str()),
            sink: Rc::clone(&self.sink),
        };
        self.host
            .ensure_session(forwarded.session, Some(outlet), profile);
    }

    /// A member's node says it went away.
    pub(super) fn member_away(
        &mut self,
        session: SessionId,
        rooms: Vec<String>,
        handed_over: bool,
    ) {
        let elsewhere = self.not_hosted(&rooms);
        for room in elsewhere {
            let rooms = vec![room.clone()];
            let message = NodeMessage::Away {
                session,
                rooms,
                handed_over,
            };
            self.message_for_room(&room, message);
        }
        self.host.set_away(session);
        if handed_over {
            // Handed over at its node's shutdown: that node's end is not the member's.
            self.host.set_node(session, None);
        }
        self.flush_host(Origin::None);
    }

    /// A member is back, connected to `node`; `snapshots`: rooms it needs a `joined` of.
    pub(super) fn member_back(
        &mut self,
        session: SessionId,
        rooms: Vec<String>,
        node: String,
        snapshots: Vec<String>,
    ) {
        for room in self.not_hosted(&rooms) {
            let message = NodeMessage::Back {
                session,
                rooms: vec![room.clone()],
                node: node.clone(),
                snapshots: snapshots.iter().filter(|r| **r == room).cloned().collect(),
            };
            self.message_for_room(&room, message);
        }
        let outlet = HomeOutlet {
            session,
            node: Rc::from(node.as_str()),
            sink: Rc::clone(&self.sink),
        };
        // A room that no longer has the member (its node was taken for lost meanwhile) says so.
        let lost: Vec<String> = rooms
            .iter()
            .filter(|r| self.hosted.contains_key(*r) && !self.host.is_member(r, session))
            .cloned()
            .collect();
        if !lost.is_empty() {
            let frames = lost
                .iter()
                .map(|room| {
                    let left = ServerFrame::Left {
                        room: room.clone(),
                        reason: LeaveReason::NodeLost,
                    };
                    encode_server(&left).to_vec().into()
                })
                .collect();
            let frames = ForSession {
                session,
                rid: None,
                frames,
                joined: Vec::new(),
                left: lost,
            };
            self.send_for_session(&node, frames);
        }
        self.host.set_back(session, outlet, Some(node));
        for room in snapshots {
            if self.hosted.contains_key(&room) {
                self.host.send_joined(session, &room, None);
            }
        }
        self.flush_host(Origin::None);
    }

    pub(super) fn member_gone(
        &mut self,
        session: SessionId,
        rooms: Vec<String>,
        reason: LeaveReason,
    ) {
        for room in self.not_hosted(&rooms) {
            let rooms = vec![room.clone()];
            self.message_for_room(
                &room,
                NodeMessage::Gone {
                    session,
                    rooms,
                    reason,
                },
            );
        }
        self.host.remove(session, reason);
        self.flush_host(Origin::None);
    }

    /// Of `rooms`, those this node is not home to (a message for them goes on to their home).
    fn not_hosted(&self, rooms: &[String]) -> Vec<String> {
        rooms
            .iter()
            .filter(|r| !self.hosted.contains_key(*r) && !self.creating.contains_key(*r))
            .cloned()
            .collect()
    }

    // ---- committing -------------------------------------------------------------------------

    /// Commits what the hosting registry's last call changed, one commit per room, and sends
    /// what it said to whom once they are all in.
    pub(super) fn flush_host(&mut self, origin: Origin) {
        let effects = self.host.take_effects();
        let sunk: Vec<Sunk> = std::mem::take(&mut *self.sink.borrow_mut());
        self.flush_effects(origin, effects, sunk);
    }

    /// Commits `effects` (what a hosting call changed) and sends `sunk` (what it said) once
    /// they are in.
    pub(super) fn flush_effects(&mut self, origin: Origin, effects: HostEffects, sunk: Vec<Sunk>) {
        let mut rooms: BTreeSet<String> = effects.touched.clone();
        rooms.extend(effects.appends.iter().map(|a| a.room.clone()));
        rooms.extend(effects.disposed.iter().cloned());
        // A `joined` needs the store's next offset even when nothing was appended.
        for item in &sunk {
            if let Sunk::Frame { frame, .. } = item {
                if frame_kind(frame) == Some("joined") {
                    if let Ok(ServerFrame::Joined(joined)) = decode_server(frame, 128) {
                        rooms.insert(joined.room);
                    }
                }
            }
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let mut batch = Batch {
            id,
            origin,
            waiting: 0,
            sunk,
            rooms: HashMap::new(),
            failure: None,
        };
        let mut commits = Vec::new();
        for room in rooms {
            let Some(hosted) = self.hosted.get(&room) else {
                continue;
            };
            let disposed = effects.disposed.contains(&room);
            let mut commit = Commit {
                room: room.clone(),
                epoch: hosted.epoch,
                history: self.host.history_of(&room).unwrap_or_default(),
                delete: disposed,
                ..Commit::default()
            };
            if !disposed {
                commit.frames = effects
                    .appends
                    .iter()
                    .filter(|a| a.room == room)
                    .map(|a| (a.body.clone(), a.skip))
                    .collect();
                if effects.touched.contains(&room) {
                    if let Some(checkpoint) = self.host.checkpoint(&room) {
                        let now: HashSet<SessionId> =
                            checkpoint.members.iter().map(|m| m.session).collect();
                        commit.add = now.difference(&hosted.members).copied().collect();
                        commit.remove = hosted.members.difference(&now).copied().collect();
                        commit.logic = checkpoint.room_type.is_some();
                        commit.replay_from = checkpoint.logic_from;
                        commit.checkpoint = Some(parlor_protocol::encode_value(&checkpoint));
                        if checkpoint.version != hosted.version {
                            if let Some((state, version)) = self.host.state_of(&room) {
                                commit.state =
                                    Some((parlor_protocol::encode_value(state), version));
                            }
                        }
                    }
                }
                let provisional = self.host.next_offset(&room).unwrap_or(0);
                batch.rooms.insert(room.clone(), (provisional, None));
            }
            commits.push(commit);
        }
        batch.waiting = commits.len();
        for commit in commits {
            let room = commit.room.clone();
            if let Some(hosted) = self.hosted.get_mut(&room) {
                let members: HashSet<SessionId> = hosted
                    .members
                    .iter()
                    .copied()
                    .filter(|m| !commit.remove.contains(m))
                    .chain(commit.add.iter().copied())
                    .collect();
                hosted.members = members;
                if let Some((_, version)) = &commit.state {
                    hosted.version = *version;
                }
            }
            if commit.delete {
                self.hosted.remove(&room);
                self.homes.remove(&room);
                self.call(
                    Op::NodeRoom {
                        room: room.clone(),
                        add: false,
                    },
                    Then::Nothing,
                );
            }
            let delete = commit.delete;
            self.call(
                Op::Commit(commit),
                Then::Commit {
                    batch: id,
                    room: room.clone(),
                },
            );
            // The index follows right behind (a hint for matchmakers and listings, written
            // before anyone hears of the change).
            if delete {
                self.call(
                    Op::IndexPut {
                        room,
                        listing: None,
                        opens: false,
                    },
                    Then::Nothing,
                );
            } else if effects.touched.contains(&room) {
                self.put_listing(&room);
            }
        }
        self.batches.push_back(batch);
        self.deliver_batches();
    }

    pub(super) fn on_commit(&mut self, batch: u64, room: String, reply: Result<Reply, LinkError>) {
        let fenced = |s: &mut Self, room: &str| {
            // Another node is the room's home now: stop deciding for it.
            s.host.drop_room(room);
            s.hosted.remove(room);
            s.homes.remove(room);
        };
        let failure = match reply {
            Ok(Reply::Committed(Some((_, next)))) => {
                if let Some(b) = self.batches.iter_mut().find(|b| b.id == batch) {
                    if let Some(entry) = b.rooms.get_mut(&room) {
                        entry.1 = Some(next.saturating_sub(entry.0));
                    }
                }
                None
            }
            Ok(Reply::Committed(None)) => {
                fenced(self, &room);
                Some(RequestError::Unavailable(format!(
                    "room {room:?} moved to another node; nothing was done"
                )))
            }
            Ok(_) => Some(RequestError::OutcomeUnknown(
                "an answer a commit does not take".into(),
            )),
            Err(err) => {
                let not_done = err.not_carried_out();
                fenced(self, &room);
                Some(if not_done {
                    RequestError::Unavailable(err.to_string())
                } else {
                    RequestError::OutcomeUnknown(err.to_string())
                })
            }
        };
        if let Some(b) = self.batches.iter_mut().find(|b| b.id == batch) {
            b.waiting = b.waiting.saturating_sub(1);
            if failure.is_some() && b.failure.is_none() {
                b.failure = failure;
            }
        }
        self.deliver_batches();
    }

    /// Sends what committed batches said, in the order they were made.
    fn deliver_batches(&mut self) {
        while self.batches.front().is_some_and(|b| b.waiting == 0) {
            let Some(batch) = self.batches.pop_front() else {
                return;
            };
            self.deliver_batch(batch);
        }
    }

    fn deliver_batch(&mut self, batch: Batch) {
        if let Some(err) = batch.failure {
            return self.answer_failed(batch.origin, err);
        }
        // Per session, in order: the frames, with the rooms they join and leave.
        let mut outgoing: Vec<(Rc<str>, ForSession)> = Vec::new();
        let mut closes = Vec::new();
        for item in batch.sunk {
            match item {
                Sunk::Close { session, node, why } => closes.push((session, node, why)),
                Sunk::Frame {
                    session,
                    node,
                    frame,
                } => {
                    let (frame, joined, left) = match frame_kind(&frame) {
                        Some("joined") => match decode_server(&frame, 128) {
                            Ok(ServerFrame::Joined(mut joined)) => {
                                let delta = batch
                                    .rooms
                                    .get(&joined.room)
                                    .and_then(|(_, d)| *d)
                                    .unwrap_or(0);
                                joined.offset += delta;
                                let hint =
                                    (joined.room.clone(), joined.epoch.clone(), joined.offset);
                                (fixed(joined), Some(hint), None)
                            }
                            _ => (frame, None, None),
                        },
                        Some("left") => match decode_server(&frame, 8) {
                            Ok(ServerFrame::Left { ref room, .. }) => {
                                let room = room.clone();
                                (frame, None, Some(room))
                            }
                            _ => (frame, None, None),
                        },
                        _ => (frame, None, None),
                    };
                    let entry = match outgoing.iter_mut().find(|(_, f)| f.session == session) {
                        Some(entry) => entry,
                        None => {
                            outgoing.push((
                                node,
                                ForSession {
                                    session,
                                    rid: None,
                                    frames: Vec::new(),
                                    joined: Vec::new(),
                                    left: Vec::new(),
                                },
                            ));
                            let last = outgoing.len() - 1;
                            &mut outgoing[last]
                        }
                    };
                    entry.1.frames.push(frame.to_vec().into());
                    entry.1.joined.extend(joined);
                    entry.1.left.extend(left);
                }
            }
        }
        match &batch.origin {
            Origin::Request {
                from, rid, session, ..
            } => match outgoing.iter_mut().find(|(_, f)| f.session == *session) {
                Some((_, f)) => f.rid = Some(*rid),
                None => outgoing.push((
                    Rc::from(from.as_str()),
                    ForSession {
                        session: *session,
                        rid: Some(*rid),
                        frames: Vec::new(),
                        joined: Vec::new(),
                        left: Vec::new(),
                    },
                )),
            },
            Origin::None => {}
        }
        for (node, for_session) in outgoing {
            self.send_for_session(&node, for_session);
        }
        for (session, node, why) in closes {
            if let Close::Evicted(LeaveReason::Kicked) = why {
                self.send_node(&node, NodeMessage::Kicked { session }, None, None);
            }
        }
    }

    /// A call whose commit failed: its requester hears why, and nobody else hears anything.
    fn answer_failed(&mut self, origin: Origin, err: RequestError) {
        match origin {
            Origin::Request {
                from,
                rid,
                session,
                reference,
            } => {
                let frame = encode_server(&ServerFrame::Error(ErrorFrame {
                    reference,
                    code: err.code(),
                    message: err.to_string(),
                    reason: None,
                }));
                self.send_for_session(
                    &from,
                    ForSession {
                        session,
                        rid: Some(rid),
                        frames: vec![frame.to_vec().into()],
                        joined: Vec::new(),
                        left: Vec::new(),
                    },
                );
            }
            Origin::None => {}
        }
    }

    /// The index lists `room` as `listing` (a matchmaker made it).
    pub(super) fn listed(&mut self, room: &str, listing: &Listing) {
        if let Some(hosted) = self.hosted.get_mut(room) {
            hosted.listed = Some(listing.clone());
        }
    }

    fn put_listing(&mut self, room: &str) {
        let Some(listing) = self.host.listing_of(room) else {
            return;
        };
        let previous = self
            .hosted
            .get_mut(room)
            .and_then(|hosted| hosted.listed.replace(listing.clone()));
        let opens = previous.is_none_or(|previous| !only_filled(&previous, &listing));
        let entry = IndexEntry {
            info: listing.info,
            private: listing.private,
            created: self.host.created_of(room).unwrap_or(0),
            home: self.node.to_string(),
        };
        self.call(
            Op::IndexPut {
                room: room.to_owned(),
                listing: Some(parlor_protocol::encode_value(&entry)),
                opens,
            },
            Then::Nothing,
        );
    }

    /// Frames for a session, to its node: delivered here if it is this node.
    pub(super) fn send_for_session(&mut self, node: &str, frames: ForSession) {
        self.send_node(node, NodeMessage::Frames(frames), None, None);
    }

    /// Sends node `node` a message (handled at once if it is this node). `room`: the room
    /// whose home it is meant for, and `rid`: the request it carries, if any; if `node` is
    /// gone, they find the room's home again.
    pub(super) fn send_node(
        &mut self,
        node: &str,
        message: NodeMessage,
        room: Option<String>,
        rid: Option<u64>,
    ) {
        if node == &*self.node {
            return self.on_message(message);
        }
        let message = message.encode();
        self.call(
            Op::Publish {
                node: node.to_owned(),
                message: message.clone(),
            },
            Then::Sent(Sending {
                node: node.to_owned(),
                room,
                rid,
                message,
            }),
        );
    }

    pub(super) fn on_sent(&mut self, sending: Sending, reply: Result<Reply, LinkError>) {
        match reply {
            Ok(Reply::Published(Some(0))) => {
                // Nobody listens on that inbox: the node is gone.
                if let Some(room) = &sending.room {
                    if self.homes.get(room) == Some(&sending.node) {
                        self.homes.remove(room);
                    }
                }
                match (sending.rid, sending.room) {
                    (Some(rid), _) => {
                        if let Some(forward) = self.forwards.get_mut(&rid) {
                            forward.home = None;
                            self.reroute.push(rid);
                        }
                    }
                    (None, Some(room)) => {
                        if let Some(message) = NodeMessage::decode(&sending.message) {
                            if self.resend.len() < MAX_UNSENT {
                                self.resend.push((room, message));
                            }
                        }
                    }
                    (None, None) => {}
                }
            }
            Ok(Reply::Published(None)) => {
                // Heard by whoever listens, if anyone: should the node turn out dead, the
                // message goes again to the room's next home (homes take a message twice
                // as they take it once: `away`, `back` and `gone` say what is, not what changes).
                if let (None, Some(room)) = (sending.rid, sending.room) {
                    if let Some(message) = NodeMessage::decode(&sending.message) {
                        if self.uncounted.len() >= MAX_UNSENT {
                            self.uncounted.pop_front();
                        }
                        self.uncounted
                            .push_back((self.now, sending.node, room, message));
                    }
                }
            }
            Ok(_) => {}
            Err(err) if err.not_carried_out() => {
                if let Some(rid) = sending.rid {
                    return self.fail_forward(rid, RequestError::from(err));
                }
                if self.unsent.len() < MAX_UNSENT {
                    self.unsent.push(sending);
                }
            }
            Err(err) => {
                if sending.rid.is_some() {
                    // It may have arrived: the home answers it, or this node gives up on it.
                    tracing::debug!("cluster: a forwarded request's publish failed: {err}");
                    return;
                }
                if self.unsent.len() < MAX_UNSENT {
                    self.unsent.push(sending);
                }
            }
        }
    }

    /// At a tick: requests and messages whose home was gone look for it again, rooms of dead
    /// nodes are claimed again, and requests no home answered in time are given up.
    pub(super) fn retry_routing(&mut self) {
        if !self.up {
            return;
        }
        for rid in std::mem::take(&mut self.reroute) {
            self.send_forward(rid);
        }
        for (room, message) in std::mem::take(&mut self.resend) {
            self.message_for_room(&room, message);
        }
        // A node that took a message and is still beating a while later got it.
        let kept = self.cfg.node_ttl * 3;
        while self
            .uncounted
            .front()
            .is_some_and(|(sent, ..)| self.now.duration_since(*sent) > kept)
        {
            self.uncounted.pop_front();
        }
        for room in std::mem::take(&mut self.takeovers) {
            if !self.hosted.contains_key(&room) {
                self.claim(room.clone(), None, false, Then::TakeOver { room });
            }
        }
        let patience = self.cfg.node_ttl * 2 + Duration::from_secs(5);
        let now = self.now;
        let overdue: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| now.duration_since(f.since) > patience)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in overdue {
            let err = RequestError::OutcomeUnknown("the room's home did not answer in time".into());
            self.fail_forward(rid, err);
        }
    }

    /// A message for the home of `room`, wherever it is (found, or the room claimed, first).
    pub(super) fn message_for_room(&mut self, room: &str, message: NodeMessage) {
        if self.hosted.contains_key(room) || self.creating.contains_key(room) {
            return self.on_message(message);
        }
        if let Some(home) = self.homes.get(room).cloned() {
            return self.send_node(&home, message, Some(room.to_owned()), None);
        }
        let then = Then::ClaimForMessage {
            room: room.to_owned(),
            message: Box::new(message),
        };
        self.claim(room.to_owned(), None, false, then);
    }

    pub(super) fn on_claim_for_message(
        &mut self,
        room: String,
        message: NodeMessage,
        reply: Result<Reply, LinkError>,
    ) {
        match reply {
            Ok(Reply::Claimed(Claimed::TakenOver {
                epoch,
                checkpoint,
                state,
                next,
                since,
            })) => {
                self.restore(&room, epoch, &checkpoint, &state, next, &since);
                self.on_message(message);
            }
            Ok(Reply::Claimed(Claimed::Held(Lease { home, .. }))) if self.dead.contains(&home) => {
                self.takeovers.insert(room.clone());
                if self.resend.len() < MAX_UNSENT {
                    self.resend.push((room, message));
                }
            }
            Ok(Reply::Claimed(Claimed::Held(Lease { home, .. }))) => {
                self.homes.insert(room.clone(), home.clone());
                self.send_node(&home, message, Some(room), None);
            }
            Err(err) if err.not_carried_out() && self.resend.len() < MAX_UNSENT => {
                self.resend.push((room, message));
            }
            // No room any more: there is nobody to tell.
            _ => {}
        }
    }

    // ---- leases -----------------------------------------------------------------------------

    pub(super) fn renew_leases(&mut self) {
        if !self.up {
            return;
        }
        let due: Vec<(String, u64)> = self
            .hosted
            .iter_mut()
            .filter(|(_, h)| !h.renewing)
            .map(|(room, h)| {
                h.renewing = true;
                (room.clone(), h.epoch)
            })
            .collect();
        let sent = self.now;
        for (room, epoch) in due {
            self.call(
                Op::Renew {
                    room: room.clone(),
                    epoch,
                },
                Then::Renewed { room, epoch, sent },
            );
        }
    }

    pub(super) fn on_renewed(
        &mut self,
        room: String,
        epoch: u64,
        sent: Instant,
        reply: Result<Reply, LinkError>,
    ) {
        let ttl = self.cfg.node_ttl;
        let Some(hosted) = self.hosted.get_mut(&room) else {
            return;
        };
        if hosted.epoch != epoch {
            return;
        }
        hosted.renewing = false;
        match reply {
            Ok(Reply::Renewed(true)) => {
                hosted.valid_until = sent + ttl.saturating_sub(LEASE_MARGIN);
            }
            Ok(Reply::Renewed(false)) => {
                // Fenced off: another node holds the room now.
                self.host.drop_room(&room);
                self.hosted.remove(&room);
                self.homes.remove(&room);
            }
            _ => {}
        }
    }

    /// Rooms whose lease this node could not renew in time are dropped: another node may take
    /// them once the lease runs out by the store's clock, which is no sooner than now.
    pub(super) fn drop_lapsed_leases(&mut self) {
        let now = self.now;
        let lapsed: Vec<String> = self
            .hosted
            .iter()
            .filter(|(_, h)| h.valid_until <= now)
            .map(|(room, _)| room.clone())
            .collect();
        for room in lapsed {
            tracing::warn!(
                "cluster: lost the lease of room {room:?}; it is no longer decided here"
            );
            self.host.drop_room(&room);
            self.hosted.remove(&room);
            self.homes.remove(&room);
        }
    }

    // ---- nodes that die ---------------------------------------------------------------------

    pub(super) fn on_nodes(&mut self, reply: Result<Reply, LinkError>) {
        let Ok(Reply::Nodes(nodes)) = reply else {
            return;
        };
        // Out of touch for longer than a heartbeat without the link saying so (calls that
        // hung, then went through): the others may have taken this node for dead and its
        // sessions out of their rooms. It checks as after an outage.
        let lapsed = self
            .last_beat_answered
            .is_some_and(|t| self.now.duration_since(t) > self.cfg.node_ttl);
        self.last_beat_answered = Some(self.now);
        if lapsed {
            tracing::warn!("cluster: this node's heartbeat may have run out; checking its seats");
            self.check_seats();
            self.ask_joins_again();
            self.resend_lost_messages();
        }
        // After an outage every heartbeat has run out at once: nobody is taken for dead until
        // this node has itself been connected for a whole heartbeat period.
        let settled = self
            .up_since
            .is_some_and(|t| self.now.duration_since(t) >= self.cfg.node_ttl);
        for (node, alive) in nodes {
            if node == *self.node {
                continue;
            }
            if alive {
                self.dead.remove(&node);
                continue;
            }
            if !settled || !self.dead.insert(node.clone()) {
                continue;
            }
            tracing::warn!("cluster: node {node:?} stopped beating; its members leave");
            self.node_died(&node);
        }
    }

    /// Node `node` is dead: its sessions leave this node's rooms, requests waiting for it are
    /// answered, and its rooms are claimed.
    fn node_died(&mut self, node: &str) {
        for id in self.host.sessions_on(node) {
            self.host.drop_lost(id);
        }
        self.flush_host(Origin::None);
        let stranded: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.home.as_deref() == Some(node))
            .map(|(rid, _)| *rid)
            .collect();
        for rid in stranded {
            let Some(forward) = self.forwards.get_mut(&rid) else {
                continue;
            };
            if joins(&forward.frame) {
                // A join the dead home may or may not have made: asked again of the room's
                // next home, which answers with the room if the seat was made.
                forward.recovering = true;
                forward.home = None;
                self.reroute.push(rid);
            } else {
                let err =
                    RequestError::OutcomeUnknown(format!("node {node:?}, the room's home, died"));
                self.fail_forward(rid, err);
            }
        }
        self.homes.retain(|_, home| home != node);
        for (sent, to, room, message) in std::mem::take(&mut self.uncounted) {
            if to == node {
                if self.resend.len() < MAX_UNSENT {
                    self.resend.push((room, message));
                }
            } else {
                self.uncounted.push_back((sent, to, room, message));
            }
        }
        self.call(
            Op::TakeNodeRooms {
                node: node.to_owned(),
            },
            Then::NodeRooms,
        );
    }

    pub(super) fn on_node_rooms(&mut self, reply: Result<Reply, LinkError>) {
        let Ok(Reply::Rooms(rooms)) = reply else {
            return;
        };
        for room in rooms {
            if self.hosted.contains_key(&room) {
                continue;
            }
            self.claim(room.clone(), None, false, Then::TakeOver { room });
        }
    }

    pub(super) fn on_take_over(&mut self, room: String, reply: Result<Reply, LinkError>) {
        match reply {
            Ok(Reply::Claimed(Claimed::TakenOver {
                epoch,
                checkpoint,
                state,
                next,
                since,
            })) => self.restore(&room, epoch, &checkpoint, &state, next, &since),
            Ok(Reply::Claimed(Claimed::Held(Lease { home, .. }))) => {
                if self.dead.contains(&home) {
                    // Its dead home's lease has not quite run out: again at the next tick.
                    self.takeovers.insert(room);
                } else {
                    self.homes.insert(room, home);
                }
            }
            Err(_) => {
                self.takeovers.insert(room);
            }
            _ => {}
        }
    }

    /// Messages that could not be sent while the store was away.
    pub(super) fn resend_lost_messages(&mut self) {
        for sending in std::mem::take(&mut self.unsent) {
            self.call(
                Op::Publish {
                    node: sending.node.clone(),
                    message: sending.message.clone(),
                },
                Then::Sent(sending),
            );
        }
    }

    /// Shutting down: every session here is handed over (away until its grace ends,
    /// resumable on any node), and every room homed here is released for another node.
    pub fn shut_down(&mut self) -> u64 {
        let ticket = self.ticket();
        self.closing = true;
        let grace = self.limits().reconnect_grace;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(local) = self.sessions.get(&id) else {
                continue;
            };
            let rooms = local.rooms.clone();
            if !rooms.is_empty() && !grace.is_zero() {
                self.call(
                    Op::SessionEnd {
                        session: id,
                        node: None,
                        orphan_for: Some(grace.as_millis() as u64),
                    },
                    Then::Nothing,
                );
                self.tell_homes(&rooms, |rooms| NodeMessage::Away {
                    session: id,
                    rooms,
                    handed_over: true,
                });
            } else if !rooms.is_empty() {
                self.tell_homes(&rooms, |rooms| NodeMessage::Gone {
                    session: id,
                    rooms,
                    reason: LeaveReason::Closed,
                });
            }
            if let Some(outlet) = self.sessions.get(&id).and_then(|l| l.outlet.clone()) {
                outlet.close(Close::ShuttingDown);
            }
        }
        let rooms: Vec<(String, u64)> = self
            .hosted
            .iter()
            .map(|(room, h)| (room.clone(), h.epoch))
            .collect();
        for (room, epoch) in rooms {
            // Released, it is decided here no more: another node may claim it at once.
            self.hosted.remove(&room);
            self.homes.remove(&room);
            self.host.drop_room(&room);
            self.call(Op::Release { room, epoch }, Then::Nothing);
        }
        // Replies come in the order calls were made: this one's says the others are done.
        self.call(Op::Nodes, Then::ShutDown { ticket });
        ticket
    }
}

/// A `joined` with its offset moved, encoded again.
fn fixed(joined: JoinedFrame) -> Bytes {
    encode_server(&ServerFrame::Joined(joined))
}

/// A server frame's `type`, read from its first bytes (every frame the server encodes starts
/// with the `type` key).
pub(super) fn frame_kind(frame: &[u8]) -> Option<&str> {
    let header = match frame.first()? {
        0x80..=0x8f => 1,
        0xde => 3,
        0xdf => 5,
        _ => return None,
    };
    let rest = frame.get(header..)?;
    let rest = rest.strip_prefix(&[0xa4, b't', b'y', b'p', b'e'])?;
    let len = match rest.first()? {
        b @ 0xa0..=0xbf => usize::from(b - 0xa0),
        _ => return None,
    };
    std::str::from_utf8(rest.get(1..1 + len)?).ok()
}

/// Messages kept while the store is away, to send once it is back.
pub(super) const MAX_UNSENT: usize = 65_536;

#[allow(dead_code)]
fn _use(_: &RoomFilter, _: &RoomOptions) {}

/// Whether `now` differs from `before` only by members that came in: a change no matchmaker
/// that found no room in `before` could now find a seat in (see `Op::IndexPut`).
fn only_filled(before: &Listing, now: &Listing) -> bool {
    let mut same_seats = now.clone();
    same_seats.info.members = before.info.members;
    now.info.members >= before.info.members && same_seats == *before
}
