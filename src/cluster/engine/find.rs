//! Finding rooms: matchmaking, listings and the lobby over the store's index, and the
//! backend's asks. The index lists every room as its home last committed it; it is only ever
//! a hint: a matchmaker picks the best room it lists and asks that room's home to seat the
//! session (`match_join`, the same rule a single node applies), and the home is the last word
//! on its seats, so no room overfills whatever the index says. When the index lists no room
//! that takes the session, the matchmaker makes one (claimed fresh, so it is this node's) and
//! lists it only if the index has not changed since it was read: two racers that both found
//! nothing make one room, not two, and the loser picks again.

use parlor_protocol::{RoomFilter, RoomOptions};

use super::home::Origin;
use super::*;
use crate::cluster::store::IndexEntry;
use crate::registry::{
    best_candidate, can_join, detail_of_checkpoint, match_rules, new_room_id, Changes, HostEffects,
    RoomCheckpoint,
};

/// How many times one `join_or_create` picks a room before it gives up (each pick that fails
/// does so because another racer changed the index or took the seat first).
const MAX_PICKS: u32 = 64;

/// What a `join_or_create` has done so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Matching {
    /// The room it picked (or made).
    pub(super) room: String,
    /// Whether it makes `room` (nothing matched).
    pub(super) create: bool,
    /// Rooms whose homes refused it.
    tried: Vec<String>,
    /// The index version the pick was made at.
    version: u64,
    picks: u32,
}

/// A room a matchmaker made here, waiting for the index to list it. What the registry did
/// and sent waits too, and so do requests for the room that arrive meanwhile.
pub(super) struct Creating {
    rid: u64,
    origin: Origin,
    effects: HostEffects,
    sunk: Vec<Sunk>,
    pub(super) waiting: Vec<NodeMessage>,
}

/// What an index read or write was for.
#[derive(Debug)]
pub(super) enum Finding {
    Pick {
        rid: u64,
    },
    Listed {
        room: String,
    },
    List {
        session: SessionId,
        filter: RoomFilter,
        limit: usize,
        reference: Option<Ref>,
        subscribe: bool,
    },
    Lobby(Changes),
}

/// What a backend ask's store call was for.
#[derive(Debug)]
pub(super) enum BackendStep {
    Published {
        ticket: u64,
    },
    Read {
        ticket: u64,
        room: String,
    },
    All {
        ticket: u64,
        limit: usize,
    },
    List {
        ticket: u64,
        filter: RoomFilter,
        limit: usize,
    },
    Kick {
        ticket: u64,
        session: SessionId,
    },
}

/// The index's listings, oldest first.
fn entries(listings: Vec<(String, Bytes)>) -> Vec<(String, IndexEntry)> {
    let mut entries: Vec<(String, IndexEntry)> = listings
        .into_iter()
        .filter_map(|(name, bytes)| {
            let entry = parlor_protocol::decode_value::<IndexEntry>(&bytes, 64).ok()?;
            Some((name, entry))
        })
        .collect();
    entries.sort_by(|a, b| (a.1.created, &a.0).cmp(&(b.1.created, &b.0)));
    entries
}

fn listings(listings: Vec<(String, Bytes)>) -> Vec<Listing> {
    entries(listings)
        .into_iter()
        .map(|(_, e)| e.listing())
        .collect()
}

impl<O: Outlet> Engine<O> {
    // ---- matchmaking -----------------------------------------------------------------------

    pub(super) fn join_or_create(
        &mut self,
        id: SessionId,
        filter: RoomFilter,
        options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        match_rules(self.limits(), &filter, options.clone())?;
        let local = self
            .sessions
            .get(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        can_join(
            self.limits(),
            &local.profile,
            &local.rooms,
            local.joining,
            None,
        )?;
        let frame = ClientFrame::JoinOrCreate {
            reference,
            filter,
            options,
        };
        let rid = self.new_forward(id, String::new(), frame, Some(Matching::default()));
        if let Some(local) = self.sessions.get_mut(&id) {
            local.busy = Some(rid);
            local.joining += 1;
        }
        self.pick(rid);
        Ok(())
    }

    /// Reads the index to pick a room for `join_or_create` `rid`.
    fn pick(&mut self, rid: u64) {
        self.call(
            Op::IndexRead { rooms: None },
            Then::Find(Finding::Pick { rid }),
        );
    }

    fn on_pick(&mut self, rid: u64, reply: Result<Reply, LinkError>) {
        let (version, listed) = match reply {
            Ok(Reply::Index { version, listings }) => (version, entries(listings)),
            Ok(_) => {
                let err =
                    RequestError::OutcomeUnknown("an answer an index read does not take".into());
                return self.fail_forward(rid, err);
            }
            Err(err) => return self.fail_forward(rid, RequestError::Unavailable(err.to_string())),
        };
        let Some(forward) = self.forwards.get(&rid) else {
            return;
        };
        let ClientFrame::JoinOrCreate { filter, .. } = &forward.frame else {
            return;
        };
        let Some(local) = self.sessions.get(&forward.session) else {
            return self.finish_forward(rid);
        };
        let tried = forward
            .matching
            .as_ref()
            .map(|m| m.tried.as_slice())
            .unwrap_or_default();
        let best = best_candidate(
            listed
                .iter()
                .filter(|(name, entry)| {
                    entry.listing().takes_matchmaking(filter)
                        && !tried.contains(name)
                        && !local.rooms.contains(name)
                        && local.profile.may_enter(name)
                })
                .map(|(name, entry)| (name.as_str(), entry.info.members as usize, entry.created)),
        )
        .map(str::to_owned);
        let Some(forward) = self.forwards.get_mut(&rid) else {
            return;
        };
        let matching = forward.matching.get_or_insert_with(Matching::default);
        match best {
            Some(room) => {
                matching.room = room.clone();
                matching.create = false;
                forward.room = room;
            }
            None => {
                let room = new_room_id();
                matching.room = room.clone();
                matching.create = true;
                matching.version = version;
                forward.room = room;
            }
        }
        forward.home = None;
        self.send_forward(rid);
    }

    /// The home of the room matchmaking picked did not seat the session: pick again.
    pub(super) fn on_match_refused(&mut self, _session: SessionId, rid: u64) {
        self.on_match_refused_rid(rid);
    }

    pub(super) fn on_match_refused_rid(&mut self, rid: u64) {
        let Some(forward) = self.forwards.get_mut(&rid) else {
            return;
        };
        let matching = forward.matching.get_or_insert_with(Matching::default);
        if !matching.create {
            matching.tried.push(matching.room.clone());
        }
        matching.picks += 1;
        matching.create = false;
        forward.home = None;
        // A join a dead home may have made was asked again of the room's next home, which
        // did not seat the session: the next pick is a join like any other (one that may make
        // its room).
        forward.recovering = false;
        if matching.picks >= MAX_PICKS {
            let err = RequestError::Unavailable("matchmaking found no room in time".into());
            return self.fail_forward(rid, err);
        }
        self.pick(rid);
    }

    /// This node made the room matchmaking `rid` found no other for: the session is seated in
    /// it here, and the room is listed if the index has not changed since the pick.
    pub(super) fn created_for_match(&mut self, rid: u64, now_ms: u64) {
        let Some(forward) = self.forwards.get(&rid) else {
            return;
        };
        let room = forward.room.clone();
        let version = forward.matching.as_ref().map_or(0, |m| m.version);
        let Some(forwarded) = self.forwarded(rid) else {
            return self.release_unmade(&room);
        };
        let ClientFrame::JoinOrCreate {
            filter,
            options,
            reference,
        } = forward.frame.clone()
        else {
            return;
        };
        let session = forwarded.session;
        self.seat_visitor(&forwarded);
        let made = self
            .host
            .match_create(session, &room, &filter, options, reference);
        if let Err(err) = made {
            self.host.forget_if_roomless(session);
            self.sink.borrow_mut().clear();
            let _ = self.host.take_effects();
            self.release_unmade(&room);
            return self.fail_forward(rid, err);
        }
        self.host.stamp(&room, now_ms);
        let effects = self.host.take_effects();
        let sunk = std::mem::take(&mut *self.sink.borrow_mut());
        let Some(listing) = self.host.listing_of(&room) else {
            return;
        };
        self.listed(&room, &listing);
        let entry = IndexEntry {
            info: listing.info,
            private: listing.private,
            created: now_ms,
            home: self.node.to_string(),
        };
        self.creating.insert(
            room.clone(),
            Creating {
                rid,
                origin: Origin::Request {
                    from: self.node.to_string(),
                    rid,
                    session,
                    reference,
                },
                effects,
                sunk,
                waiting: Vec::new(),
            },
        );
        self.call(
            Op::IndexCreate {
                version,
                room: room.clone(),
                listing: parlor_protocol::encode_value(&entry),
            },
            Then::Find(Finding::Listed { room }),
        );
    }

    fn on_listed(&mut self, room: String, reply: Result<Reply, LinkError>) {
        let Some(creating) = self.creating.remove(&room) else {
            return;
        };
        let Creating {
            rid,
            origin,
            effects,
            sunk,
            waiting,
        } = creating;
        match reply {
            Ok(Reply::IndexCreated(true)) => {
                self.flush_effects(origin, effects, sunk);
                for message in waiting {
                    self.on_message(message);
                }
            }
            other => {
                // Another racer changed the index first (or the store did not answer): the
                // room is unmade, and the session picks again (or hears why not).
                self.host.drop_room(&room);
                self.release_unmade(&room);
                for message in waiting {
                    self.on_message(message);
                }
                match other {
                    Ok(Reply::IndexCreated(false)) => self.on_match_refused_rid(rid),
                    Err(err) => self.fail_forward(rid, RequestError::Unavailable(err.to_string())),
                    Ok(_) => self.fail_forward(
                        rid,
                        RequestError::Unavailable("an answer an index write does not take".into()),
                    ),
                }
            }
        }
    }

    // ---- listings and the lobby ------------------------------------------------------------

    pub(super) fn list_for(
        &mut self,
        session: SessionId,
        filter: RoomFilter,
        limit: usize,
        reference: Option<Ref>,
        subscribe: bool,
    ) {
        self.call(
            Op::IndexRead { rooms: None },
            Then::Find(Finding::List {
                session,
                filter,
                limit,
                reference,
                subscribe,
            }),
        );
    }

    fn on_list(
        &mut self,
        session: SessionId,
        filter: RoomFilter,
        limit: usize,
        reference: Option<Ref>,
        subscribe: bool,
        reply: Result<Reply, LinkError>,
    ) {
        let listed = match reply {
            Ok(Reply::Index { listings: l, .. }) => listings(l),
            Ok(_) => Vec::new(),
            Err(err) => {
                let err = RequestError::Unavailable(err.to_string());
                return self.send_error(session, reference, &err);
            }
        };
        let rooms = filtered(listed, &filter, limit);
        if subscribe && self.sessions.contains_key(&session) {
            if !self.lobby.has_subscribers() && !self.lobby_listening {
                self.lobby_listening = true;
                self.out.push_back(Output::Lobby(true));
            }
            self.lobby.subscribe(session, filter);
        }
        self.send_frame(session, &ServerFrame::RoomList { reference, rooms });
    }

    /// A room's listing changed somewhere (the lobby channel said so).
    pub fn on_lobby(&mut self, room: &str) {
        self.lobby.changed(room);
    }

    /// Sends lobby subscribers what changed since the last flush, as the index lists it now.
    pub(super) fn flush_lobby(&mut self) {
        if !self.lobby.has_subscribers() {
            let _ = self.lobby.take_changes();
            return;
        }
        let changes = self.lobby.take_changes();
        if changes.is_empty() {
            return;
        }
        let rooms = changes.names().cloned().collect();
        self.call(
            Op::IndexRead { rooms: Some(rooms) },
            Then::Find(Finding::Lobby(changes)),
        );
    }

    fn on_lobby_read(&mut self, changes: Changes, reply: Result<Reply, LinkError>) {
        let Ok(Reply::Index { listings: l, .. }) = reply else {
            return;
        };
        let by_name: HashMap<String, Listing> = listings(l)
            .into_iter()
            .map(|l| (l.info.room.clone(), l))
            .collect();
        let frames = self
            .lobby
            .frames(changes, |name| by_name.get(name).cloned());
        for (frame, to) in frames {
            for id in to {
                self.deliver(id, frame.clone());
            }
        }
    }

    pub(super) fn on_find(&mut self, finding: Finding, reply: Result<Reply, LinkError>) {
        match finding {
            Finding::Pick { rid } => self.on_pick(rid, reply),
            Finding::Listed { room } => self.on_listed(room, reply),
            Finding::List {
                session,
                filter,
                limit,
                reference,
                subscribe,
            } => self.on_list(session, filter, limit, reference, subscribe, reply),
            Finding::Lobby(changes) => self.on_lobby_read(changes, reply),
        }
    }

    // ---- the backend's asks ------------------------------------------------------------------

    /// Backend API: `event` into `room`, straight into its log. Answered `Asked::Published`.
    pub fn publish(&mut self, room: String, event: String, data: parlor_protocol::Value) -> u64 {
        let ticket = self.ticket();
        let body = encode_server(&ServerFrame::Event(parlor_protocol::EventFrame {
            room: room.clone(),
            from: crate::registry::BACKEND,
            event,
            data,
            offset: 0,
        }));
        self.call(
            Op::Emit {
                room,
                member: None,
                skip: None,
                body,
            },
            Then::Backend(BackendStep::Published { ticket }),
        );
        ticket
    }

    /// Backend API: a room whole, from its checkpoint. Answered `Asked::Room`.
    pub fn read_room(&mut self, room: String) -> u64 {
        let ticket = self.ticket();
        self.call(
            Op::ReadRoom { room: room.clone() },
            Then::Backend(BackendStep::Read { ticket, room }),
        );
        ticket
    }

    /// Backend API: every room, oldest first. Answered `Asked::AllRooms`.
    pub fn all_rooms(&mut self, limit: usize) -> u64 {
        let ticket = self.ticket();
        self.call(
            Op::IndexRead { rooms: None },
            Then::Backend(BackendStep::All { ticket, limit }),
        );
        ticket
    }

    /// `GET /rooms`: the public rooms matching `filter`. Answered `Asked::Listed`.
    pub fn list_rooms(&mut self, filter: RoomFilter, limit: usize) -> u64 {
        let ticket = self.ticket();
        self.call(
            Op::IndexRead { rooms: None },
            Then::Backend(BackendStep::List {
                ticket,
                filter,
                limit,
            }),
        );
        ticket
    }

    /// Backend API: session `session` leaves its rooms and its connection closes, on
    /// whichever node it is. Answered `Asked::Kicked`.
    pub fn kick(&mut self, session: SessionId) -> u64 {
        let ticket = self.ticket();
        self.call(
            Op::SessionRead { session },
            Then::Backend(BackendStep::Kick { ticket, session }),
        );
        ticket
    }

    pub(super) fn on_backend_step(&mut self, step: BackendStep, reply: Result<Reply, LinkError>) {
        match step {
            BackendStep::Published { ticket } => {
                let answer = match reply {
                    Ok(Reply::Emitted(offset)) => Ok(offset),
                    _ => Err(Unreachable),
                };
                self.answer(ticket, Asked::Published(answer));
            }
            BackendStep::Read { ticket, room } => {
                let answer = match reply {
                    Ok(Reply::Room(None)) => Ok(None),
                    Ok(Reply::Room(Some((checkpoint, state, next)))) => {
                        let checkpoint =
                            parlor_protocol::decode_value::<RoomCheckpoint>(&checkpoint, 64);
                        let state = parlor_protocol::decode_value(&state, 128);
                        match (checkpoint, state) {
                            (Ok(checkpoint), Ok(state)) => {
                                Ok(Some(detail_of_checkpoint(&room, checkpoint, state, next)))
                            }
                            _ => Err(Unreachable),
                        }
                    }
                    _ => Err(Unreachable),
                };
                self.answer(ticket, Asked::Room(answer));
            }
            BackendStep::All { ticket, limit } => {
                let answer = match reply {
                    Ok(Reply::Index { listings: l, .. }) => {
                        Ok(listings(l).into_iter().take(limit).collect())
                    }
                    _ => Err(Unreachable),
                };
                self.answer(ticket, Asked::AllRooms(answer));
            }
            BackendStep::List {
                ticket,
                filter,
                limit,
            } => {
                let answer = match reply {
                    Ok(Reply::Index { listings: l, .. }) => {
                        Ok(filtered(listings(l), &filter, limit))
                    }
                    _ => Err(Unreachable),
                };
                self.answer(ticket, Asked::Listed(answer));
            }
            BackendStep::Kick { ticket, session } => {
                let answer = match reply {
                    Ok(Reply::Session(Some((node, rooms)))) => {
                        if node == *self.node || self.sessions.contains_key(&session) {
                            self.session_kicked(session);
                        } else if node.is_empty() {
                            // Handed over at a shutdown: it is on no node; its rooms hear.
                            self.end_handed_over(session, LeaveReason::Kicked);
                            let _ = rooms;
                        } else {
                            self.send_node(&node, NodeMessage::Kicked { session }, None, None);
                        }
                        Ok(true)
                    }
                    Ok(Reply::Session(None)) => {
                        // In no room, so the store does not know it: only its node does.
                        let here = self.sessions.contains_key(&session);
                        if here {
                            self.session_kicked(session);
                        }
                        Ok(here)
                    }
                    _ => Err(Unreachable),
                };
                self.answer(ticket, Asked::Kicked(answer));
            }
        }
    }

    // ---- sessions handed over at a shutdown --------------------------------------------------

    pub(super) fn on_orphans(&mut self, reply: Result<Reply, LinkError>) {
        let Ok(Reply::Orphans(due)) = reply else {
            return;
        };
        for session in due {
            self.end_handed_over(session, LeaveReason::Timeout);
        }
    }

    /// Ends a session handed over at a shutdown (on no node) for `reason`: its rooms hear.
    fn end_handed_over(&mut self, session: SessionId, reason: LeaveReason) {
        self.call(
            Op::SessionEnd {
                session,
                node: Some(String::new()),
                orphan_for: None,
            },
            Then::SessionGone { session, reason },
        );
    }

    /// A session's record is gone: the homes of its rooms hear it left for `reason`.
    pub(super) fn on_session_gone(
        &mut self,
        session: SessionId,
        reason: LeaveReason,
        reply: Result<Reply, LinkError>,
    ) {
        let Ok(Reply::SessionEnded(Some(rooms))) = reply else {
            return;
        };
        self.tell_homes(&rooms, |rooms| NodeMessage::Gone {
            session,
            rooms,
            reason,
        });
    }
}

/// The public rooms matching `filter`, oldest first, at most `limit`.
fn filtered(listed: Vec<Listing>, filter: &RoomFilter, limit: usize) -> Vec<RoomInfo> {
    listed
        .into_iter()
        .filter(|l| l.matches(filter))
        .take(limit)
        .map(|l| l.info)
        .collect()
}
