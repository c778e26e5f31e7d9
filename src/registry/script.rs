//! A scripted driver of the sans-IO `Registry`, for the fuzz targets and the property tests:
//! `Op` is a step (connect, drop, a client request, a resume, time passing, a flush, a backend
//! call) over a small world of sessions and rooms, so that arbitrary input soon reaches deep
//! states. `World::step` runs one and checks the registry's invariants and what each
//! connection received: every frame decodes, and a room's offsets only grow between joins.
//! Built for tests and with the `script` feature only.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use parlor_protocol::{
    decode_client, decode_server, ClientFrame, LeaveReason, Metadata, RoomFilter, RoomOptions,
    RoomPosition, ServerFrame, SessionId, StateOp, Value,
};

use super::{Close, Outlet, Overflow, Profile, Registry, RegistryLimits, RoomPatterns};

const ROOMS: [&str; 4] = ["a", "b", "game-1", "game-2"];

fn room(n: u8) -> String {
    ROOMS[usize::from(n) % ROOMS.len()].to_owned()
}

/// One step of a script.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// A new connection; `budget` frames before it overflows (0: unlimited); `games_only`:
    /// its token lets it into the `game-*` rooms, and into room "b" only to read it.
    Connect {
        budget: u8,
        user: Option<u8>,
        games_only: bool,
    },
    /// Connection `who` ends for `reason`.
    End {
        who: u8,
        reason: u8,
    },
    Request {
        who: u8,
        request: Request,
    },
    /// Raw bytes through the decoder, as a session would pass them on.
    Raw {
        who: u8,
        bytes: Vec<u8>,
    },
    /// A new connection resumes session `target`, with its token or not, from positions.
    Resume {
        target: u8,
        right_token: bool,
        /// Per room of the target: its own epoch or a stale one, how many frames back.
        positions: Vec<(bool, u8)>,
    },
    Advance {
        millis: u16,
    },
    FlushLobby,
    FlushPatches,
    Publish {
        room: u8,
    },
    KickSession {
        who: u8,
    },
    ShutDown,
}

/// A client request over the small world.
#[derive(Arbitrary, Debug, Clone)]
pub enum Request {
    Join {
        room: u8,
        password: Option<u8>,
        /// False: only a room that exists.
        create: bool,
    },
    Create {
        room: Option<u8>,
        seats: Option<u8>,
        private: bool,
        password: Option<u8>,
        keep: bool,
    },
    JoinOrCreate {
        mode: Option<u8>,
        seats: Option<u8>,
    },
    Leave {
        room: u8,
    },
    Emit {
        room: u8,
        echo: bool,
    },
    Send {
        to: u8,
    },
    Lock {
        room: u8,
        locked: bool,
    },
    Kick {
        room: u8,
        target: u8,
    },
    SetMetadata {
        room: u8,
        mode: u8,
    },
    ListRooms {
        mode: Option<u8>,
    },
    SubscribeLobby,
    UnsubscribeLobby,
    UpdateState {
        room: u8,
        key: u8,
        delete: bool,
        if_version: Option<u8>,
    },
}

/// What one connection has received, as far as the checks need.
#[derive(Default)]
struct Seen {
    /// The next offset at least, per room, since the last `joined` (or resume) there.
    next_offset: HashMap<String, u64>,
    /// The positions a `resume` on this connection claimed: what the client has seen.
    claimed: HashMap<String, u64>,
    budget: Option<usize>,
    closed: Option<Close>,
    failure: Option<String>,
}

/// An outlet that checks what it is given.
#[derive(Clone, Default)]
pub struct Probe(Rc<RefCell<Seen>>);

impl Outlet for Probe {
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow> {
        let mut seen = self.0.borrow_mut();
        if let Some(budget) = seen.budget.as_mut() {
            if *budget == 0 {
                return Err(Overflow);
            }
            *budget -= 1;
        }
        let frame = match decode_server(&frame, 64) {
            Ok(frame) => frame,
            Err(err) => {
                seen.failure = Some(format!("a frame does not decode: {err:?}"));
                return Ok(());
            }
        };
        match &frame {
            ServerFrame::Joined(j) => {
                seen.next_offset.insert(j.room.clone(), j.offset);
            }
            ServerFrame::Resumed(_) => {
                // Replayed frames must start where the client said it was; rooms that get a
                // snapshot are reset by their `joined`.
                seen.next_offset = std::mem::take(&mut seen.claimed);
            }
            ServerFrame::Left { room, .. } => {
                seen.next_offset.remove(room);
            }
            _ => {}
        }
        if let Some((room, offset)) = frame.room_offset() {
            let expected = seen.next_offset.get(room).copied().unwrap_or(0);
            if offset < expected {
                seen.failure = Some(format!("offset {offset} in {room:?} after {expected}"));
            }
            seen.next_offset.insert(room.to_owned(), offset + 1);
        }
        Ok(())
    }

    fn close(&self, why: Close) {
        self.0.borrow_mut().closed = Some(why);
    }
}

/// The registry under test and the connections it has been given.
pub struct World {
    pub registry: Registry<Probe>,
    /// Every connection made, by the session id it started as, with the session it is now
    /// and its token.
    connections: Vec<(SessionId, Probe, String)>,
    now: Instant,
}

/// Small limits, so that scripts reach every bound.
pub fn small_limits() -> RegistryLimits {
    RegistryLimits {
        max_rooms_per_session: 3,
        max_members_per_room: 4,
        max_room_name_bytes: 32,
        max_event_name_bytes: 8,
        max_rooms: 6,
        max_state_bytes: 200,
        max_state_values: 40,
        max_metadata_bytes: 64,
        max_listed_rooms: 4,
        lobby_frame_bytes: 16_384,
        batch_state_patches: false,
        max_patch_batch_bytes: 256,
        reconnect_grace: Duration::from_millis(500),
        history_frames: 6,
        history_bytes: 1024,
        replay_budget_bytes: 2048,
        max_away_sessions: 3,
    }
}

impl World {
    pub fn new(mut limits: RegistryLimits, batch_patches: bool) -> Self {
        limits.batch_state_patches = batch_patches;
        let now = Instant::now();
        let mut registry = Registry::new(limits);
        registry.advance(now);
        Self {
            registry,
            connections: Vec::new(),
            now,
        }
    }

    fn pick(&self, who: u8) -> Option<SessionId> {
        let n = self.connections.len();
        (n > 0).then(|| self.connections[usize::from(who) % n].0)
    }

    /// Runs one step, then checks everything; `Err` describes the first thing found wrong.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Connect {
                budget,
                user,
                games_only,
            } => {
                self.connect(*budget, *user, *games_only);
            }
            Op::End { who, reason } => {
                if let Some(id) = self.pick(*who) {
                    let reason = [
                        LeaveReason::Dropped,
                        LeaveReason::Timeout,
                        LeaveReason::Closed,
                        LeaveReason::ProtocolError,
                    ][usize::from(*reason) % 4];
                    self.registry.disconnect(id, reason);
                }
            }
            Op::Request { who, request } => {
                if let Some(id) = self.pick(*who) {
                    let frame = self.frame(request);
                    self.registry.handle(id, frame);
                }
            }
            Op::Raw { who, bytes } => {
                if let (Some(id), Ok(frame)) = (self.pick(*who), decode_client(bytes, 32)) {
                    self.registry.handle(id, frame);
                }
            }
            Op::Resume {
                target,
                right_token,
                positions,
            } => {
                if let Some(n) = self.index(*target) {
                    let id = self.connect(0, None, false);
                    let (target, _, token) = &self.connections[n];
                    let token = if *right_token {
                        token.clone()
                    } else {
                        "nope".into()
                    };
                    // Positions in the target's own rooms, mostly a few frames back from
                    // now, where replay can reach.
                    let rooms = self.registry.rooms_of(*target);
                    let positions: Vec<RoomPosition> = rooms
                        .iter()
                        .zip(positions)
                        .map(|(name, (same_epoch, back))| {
                            let (epoch, next) = self.registry.position_of(name).unwrap_or_default();
                            RoomPosition {
                                room: name.clone(),
                                epoch: if *same_epoch { epoch } else { "old".into() },
                                offset: next.saturating_sub(u64::from(*back % 10)),
                            }
                        })
                        .collect();
                    if let Some((_, probe, _)) = self.connections.iter().find(|c| c.0 == id) {
                        probe.0.borrow_mut().claimed = positions
                            .iter()
                            .map(|p| (p.room.clone(), p.offset))
                            .collect();
                    }
                    let _ = self
                        .registry
                        .resume(id, *target, &token, &positions, Some(1));
                }
            }
            Op::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(*millis));
                self.registry.advance(self.now);
            }
            Op::FlushLobby => self.registry.flush_lobby(),
            Op::FlushPatches => self.registry.flush_state_patches(),
            Op::Publish { room: r } => {
                let _ = self
                    .registry
                    .publish(&room(*r), "news".into(), Value::from(1));
            }
            Op::KickSession { who } => {
                if let Some(id) = self.pick(*who) {
                    self.registry.kick_session(id);
                }
            }
            Op::ShutDown => self.registry.shut_down(),
        }
        self.registry.check_invariants()?;
        for (id, probe, _) in &self.connections {
            if let Some(failure) = &probe.0.borrow().failure {
                return Err(format!("connection {id}: {failure}"));
            }
        }
        Ok(())
    }

    fn connect(&mut self, budget: u8, user: Option<u8>, games_only: bool) -> SessionId {
        let id = SessionId::new_random();
        let probe = Probe::default();
        probe.0.borrow_mut().budget = (budget > 0).then_some(usize::from(budget));
        let token = format!("token-{}", self.connections.len());
        let profile = Profile {
            resume_token: token.clone(),
            user: user.map(|u| format!("user-{}", u % 3)),
            // Such a session may also enter room "b", only to read it.
            rooms: games_only.then(|| RoomPatterns::new(&["game-*"]).reading(&["b"])),
            node: None,
        };
        self.registry.connect_with(id, probe.clone(), profile);
        self.connections.push((id, probe, token));
        id
    }

    fn index(&self, n: u8) -> Option<usize> {
        let len = self.connections.len();
        (len > 0).then(|| usize::from(n) % len)
    }

    fn frame(&self, request: &Request) -> ClientFrame {
        client_frame(request, |n| self.pick(n).unwrap_or(SessionId::NIL))
    }
}

/// The client frame a scripted request stands for; `pick(n)` names the `n`th session.
pub fn client_frame(request: &Request, pick: impl Fn(u8) -> SessionId) -> ClientFrame {
    let reference = Some(1);
    let seats = |n: &Option<u8>| n.map(|n| u32::from(n % 6));
    match request {
        Request::Join {
            room: r,
            password,
            create,
        } => ClientFrame::Join {
            reference,
            room: room(*r),
            password: password.map(|p| format!("pw{}", p % 2)),
            create: *create,
        },
        Request::Create {
            room: r,
            seats: s,
            private,
            password,
            keep,
        } => ClientFrame::Create {
            reference,
            room: r.map(room),
            options: RoomOptions {
                max_members: seats(s),
                private: *private,
                password: password.map(|p| format!("pw{}", p % 2)),
                metadata: Metadata::new(),
                dispose_when_empty: !keep,
                room_type: None,
                type_options: None,
            },
        },
        Request::JoinOrCreate { mode, seats: s } => ClientFrame::JoinOrCreate {
            reference,
            filter: RoomFilter {
                mode: mode.map(|m| format!("m{}", m % 2)),
                ..RoomFilter::default()
            },
            options: RoomOptions {
                max_members: seats(s),
                ..RoomOptions::default()
            },
        },
        Request::Leave { room: r } => ClientFrame::Leave {
            reference,
            room: room(*r),
        },
        Request::Emit { room: r, echo } => ClientFrame::Emit {
            reference,
            room: room(*r),
            event: "e".into(),
            data: Value::from(1),
            echo: *echo,
        },
        Request::Send { to } => ClientFrame::Send {
            reference,
            to: pick(*to),
            event: "e".into(),
            data: Value::Nil,
        },
        Request::Lock { room: r, locked } => ClientFrame::set_lock(room(*r), *locked),
        Request::Kick { room: r, target } => ClientFrame::Kick {
            reference,
            room: room(*r),
            session: pick(*target),
        },
        Request::SetMetadata { room: r, mode } => ClientFrame::SetMetadata {
            reference,
            room: room(*r),
            metadata: [("mode".to_owned(), Value::from(format!("m{}", mode % 2)))]
                .into_iter()
                .collect(),
        },
        Request::ListRooms { mode } => ClientFrame::ListRooms {
            reference,
            filter: RoomFilter {
                mode: mode.map(|m| format!("m{}", m % 2)),
                ..RoomFilter::default()
            },
            limit: None,
        },
        Request::SubscribeLobby => ClientFrame::SubscribeLobby {
            reference,
            filter: RoomFilter::default(),
        },
        Request::UnsubscribeLobby => ClientFrame::UnsubscribeLobby { reference },
        Request::UpdateState {
            room: r,
            key,
            delete,
            if_version,
        } => {
            let path = vec![format!("k{}", key % 4), format!("x{}", key % 3)];
            let op = if *delete {
                StateOp::Delete { path }
            } else {
                StateOp::Set {
                    path,
                    value: Value::from("x".repeat(usize::from(*key % 40))),
                }
            };
            ClientFrame::UpdateState {
                reference,
                room: room(*r),
                ops: vec![op],
                if_version: if_version.map(u64::from),
            }
        }
    }
}
