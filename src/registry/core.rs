//! `Registry`, the sans-IO state machine of rooms, membership, ownership, matchmaking, shared
//! state, lobby subscriptions, and sessions that are away and may resume. Every method runs to
//! completion and speaks to sessions only through their `Outlet`: a frame is encoded once and
//! the same `Bytes` handed to every recipient (and kept in the room's history for replay).
//! Time and timers live outside: the owner calls `advance`, `flush_lobby` and
//! `flush_state_patches`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parlor_protocol::{
    encode_server, encoded_len, ClientFrame, DirectFrame, Document, ErrorCode, ErrorFrame,
    EventFrame, JoinedFrame, LeaveReason, Metadata, PresenceFrame, PresenceStatus, Ref,
    ResumedFrame, ResumedRoom, RoomFilter, RoomInfo, RoomOptions, RoomPosition, RoomUpdateFrame,
    ServerFrame, SessionId, StateError, StateLimits, StateOp, StatePatch, StatePatchFrame, Value,
};

use super::lobby::Lobby;
use super::room::{HistoryEntry, HistoryLimits, Listing, Member, Room, RoomRules};
use crate::game::{Effect, LogicRoom, LogicSlot, RoomTypes};
use crate::metrics::{Metrics, ResumeOutcome};
use crate::secret::same_secret;

/// A session's outbound budget is spent: the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound budget exceeded")]
pub struct Overflow;

/// Why the registry tells a connection to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The session was removed from its rooms for this reason (slow consumer, kicked).
    Evicted(LeaveReason),
    /// The session was resumed on another connection.
    Replaced,
    /// The node is shutting down; the session may resume elsewhere or later.
    ShuttingDown,
}

/// How the registry reaches one session.
pub trait Outlet: Clone {
    /// Queues an encoded frame for the session, or fails when its outbound budget is spent.
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow>;
    /// Tells the connection to close, and why.
    fn close(&self, why: Close);
}

/// Glob patterns (`*`, `?`) naming the rooms an authenticated user may enter: to take part
/// (its token's rooms claim), or only to read (its read-only claim).
#[derive(Clone, Debug)]
pub struct RoomPatterns {
    compiled: Arc<[wildmatch::WildMatch]>,
    sources: Arc<[String]>,
    /// Rooms entered only to read: the member hears everything and may change nothing (see
    /// `Profile::may_write`).
    reading: Arc<[wildmatch::WildMatch]>,
    reading_sources: Arc<[String]>,
}

fn compile<S: AsRef<str>>(patterns: &[S]) -> (Arc<[wildmatch::WildMatch]>, Arc<[String]>) {
    (
        patterns
            .iter()
            .map(|p| wildmatch::WildMatch::new(p.as_ref()))
            .collect(),
        patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
    )
}

impl RoomPatterns {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let (compiled, sources) = compile(patterns);
        let (reading, reading_sources) = compile::<&str>(&[]);
        Self {
            compiled,
            sources,
            reading,
            reading_sources,
        }
    }

    /// These patterns, and `patterns` naming rooms to enter only to read (where both match a
    /// room, reading wins).
    pub fn reading<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        (self.reading, self.reading_sources) = compile(patterns);
        self
    }

    pub fn allows(&self, room: &str) -> bool {
        self.compiled.iter().any(|p| p.matches(room)) || self.only_reads(room)
    }

    /// Whether `room` is entered only to read.
    pub fn only_reads(&self, room: &str) -> bool {
        self.reading.iter().any(|p| p.matches(room))
    }

    /// The patterns as given.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The read-only patterns as given.
    pub fn reading_sources(&self) -> &[String] {
        &self.reading_sources
    }
}

/// Who a session is: the secret that resumes it, and, when authenticated, its user id and the
/// rooms it may enter.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub resume_token: String,
    pub user: Option<String>,
    /// `None`: any room.
    pub rooms: Option<RoomPatterns>,
    /// The cluster node the session is connected to (`None` on a single node).
    pub node: Option<String>,
}

impl Profile {
    /// Whether the session's token lets it enter `room`.
    pub fn may_enter(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|patterns| patterns.allows(room))
    }

    /// Whether the session may change `room` (its token does not make it a reader there). A
    /// reader hears everything; in a plain room it may not emit, send through the room, write
    /// the state or act as owner (`forbidden`, reason `read_only`); a room's logic is told
    /// (`Player::read_only`) and decides (a document drops its writes and keeps its awareness).
    pub fn may_write(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|patterns| !patterns.only_reads(room))
    }
}

/// The nil session id: the `from` of events published through the backend API.
pub const BACKEND: SessionId = SessionId::NIL;

struct SessionEntry<O> {
    /// `None` while the session is away.
    outlet: Option<O>,
    /// The connection the session is on now (the id that connection was given at first).
    connection: SessionId,
    profile: Profile,
    /// Rooms this session is in, in the order it joined them.
    rooms: Vec<String>,
    /// When the connection dropped, while the session is away.
    away_since: Option<Instant>,
    /// Requests waiting, in order, for a room's logic to come back from its job (and every
    /// later request of the session behind them): at most `MAX_WAITING_REQUESTS`.
    waiting: VecDeque<ClientFrame>,
}

/// Requests one session may have waiting for rooms' logic; past it they are refused
/// `overloaded`. A room's logic is away for the length of one tick, so few ever wait.
const MAX_WAITING_REQUESTS: usize = 64;

/// Rooms and membership. See the module docs.
pub struct Registry<O> {
    limits: RegistryLimits,
    sessions: HashMap<SessionId, SessionEntry<O>>,
    rooms: HashMap<String, Room<O>>,
    lobby: Lobby,
    /// Rooms holding state patches not yet broadcast.
    rooms_with_patches: Vec<String>,
    /// Rooms created so far, for ordering.
    rooms_created: u64,
    /// Sessions whose outlet overflowed during the current operation, removed before it returns.
    overflowed: Vec<SessionId>,
    /// The time as the owner last told it (`advance`).
    now: Instant,
    /// Shutting down: sessions that end are removed without telling anyone.
    closing: bool,
    /// Sessions away, at most `max_away_sessions`: the ones `advance` looks at.
    away: HashSet<SessionId>,
    /// Hosting rooms for a cluster node: what the calls left for the engine (see `host`).
    host: Option<HostEffects>,
    /// The room types (rooms with logic) this registry can make.
    types: RoomTypes,
    /// What rooms' logic asked for and is still to be carried out (see `core/logic.rs`).
    logic_effects: VecDeque<(String, Effect)>,
    carrying_effects: bool,
    /// When each room with logic next wants the clock, earliest first (see `schedule_logic`).
    logic_deadlines: std::collections::BTreeSet<(Instant, String)>,
    /// Whether due ticks run as `LogicJob`s on the owner's pool (else here, at once).
    logic_pool: bool,
    /// Jobs for the pool, until the owner takes them.
    logic_jobs: Vec<crate::game::LogicJob>,
    /// Rooms whose logic is out on a job now: while none is, no request looks for one.
    logic_out: usize,
    /// Sessions with requests waiting for a room's logic to come back from its job, in the
    /// order they began to wait.
    waiting_sessions: VecDeque<SessionId>,
    /// A single node's store of rooms' logic between runs (`with_logic_store`): where a room
    /// made again finds its logic, and the rooms whose logic changed since the owner last took
    /// their snapshots (`take_stored_logic`), with the last ones of rooms gone.
    logic_source: Option<Box<dyn crate::game::LogicSource>>,
    logic_changed: std::collections::BTreeSet<String>,
    logic_gone: Vec<(String, crate::game::StoredLogic)>,
    pub(crate) metrics: Arc<Metrics>,
}

impl<O: Outlet> Registry<O> {
    pub fn new(limits: RegistryLimits) -> Self {
        Self::with_metrics(limits, Arc::default())
    }

    pub fn with_metrics(limits: RegistryLimits, metrics: Arc<Metrics>) -> Self {
        let lobby = Lobby::new(limits.lobby_frame_bytes);
        Self {
            limits,
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            lobby,
            rooms_with_patches: Vec::new(),
            rooms_created: 0,
            overflowed: Vec::new(),
            now: Instant::now(),
            closing: false,
            away: HashSet::new(),
            host: None,
            types: RoomTypes::new(),
            logic_effects: VecDeque::new(),
            carrying_effects: false,
            logic_deadlines: std::collections::BTreeSet::new(),
            logic_pool: false,
            logic_jobs: Vec::new(),
            logic_out: 0,
            waiting_sessions: VecDeque::new(),
            logic_source: None,
            logic_changed: std::collections::BTreeSet::new(),
            logic_gone: Vec::new(),
            metrics,
        }
    }

    /// The room types (game rules) `create` and `join_or_create` may name.
    pub fn with_room_types(mut self, types: RoomTypes) -> Self {
        self.types = types;
        self
    }

    /// Rooms' logic is kept between runs: a room made again takes its logic from `source`,
    /// and the owner takes what changed (`take_stored_logic`) to write it.
    pub fn with_logic_store(mut self, source: Box<dyn crate::game::LogicSource>) -> Self {
        self.logic_source = Some(source);
        self
    }

    /// Rooms' due ticks and timers go out as `LogicJob`s for the owner to run elsewhere (a
    /// thread pool) and hand back (`logic_done`), so that a slow tick holds up no one else.
    pub fn with_logic_pool(mut self) -> Self {
        self.logic_pool = true;
        self
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn away_count(&self) -> usize {
        self.away.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Carries out one client request from session `id` and answers its `ref`: one `ok` on
    /// success (a `room_list` for listings), one `error` on failure (errors are sent even
    /// without a `ref`).
    pub fn handle(&mut self, id: SessionId, frame: ClientFrame) {
        // Unknown sessions, and away ones (no connection to ask), are not served.
        let Some(entry) = self.sessions.get(&id).filter(|e| e.outlet.is_some()) else {
            return;
        };
        if !entry.waiting.is_empty() || self.waits_for_logic(&frame) {
            self.wait(id, frame, false);
        } else {
            self.dispatch(id, frame);
        }
        self.evict_overflowed();
    }

    /// Whether `frame` needs the answer of a room's logic that is away on a job.
    fn waits_for_logic(&self, frame: &ClientFrame) -> bool {
        if self.logic_out == 0 {
            return false;
        }
        match frame {
            ClientFrame::Emit { room, .. } | ClientFrame::Join { room, .. } => self
                .rooms
                .get(room)
                .and_then(|r| r.logic.as_ref())
                .is_some_and(LogicSlot::is_away),
            _ => false,
        }
    }

    /// Keeps `frame` until the logic it needs is back (`replay_waiting`): at the back of the
    /// session's waiting requests, or at the front (`first`) when it was already their head.
    fn wait(&mut self, id: SessionId, frame: ClientFrame, first: bool) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.waiting.len() >= MAX_WAITING_REQUESTS {
            let reference = frame.reference();
            self.send_error(id, reference, &RequestError::Overloaded);
            return;
        }
        if entry.waiting.is_empty() && !self.waiting_sessions.contains(&id) {
            self.waiting_sessions.push_back(id);
        }
        if first {
            entry.waiting.push_front(frame);
        } else {
            entry.waiting.push_back(frame);
        }
    }

    /// Carries out the requests that waited for rooms' logic, each session's in order, until
    /// every one left waits again.
    pub(super) fn replay_waiting(&mut self) {
        while self.replay_one_waiting().is_some() {}
    }

    /// Whether session `id`'s request `frame` would wait for a room's logic (behind its
    /// earlier ones, or for a room's logic away on a job) rather than be carried out now.
    pub fn would_wait(&self, id: SessionId, frame: &ClientFrame) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|e| !e.waiting.is_empty())
            || self.waits_for_logic(frame)
    }

    /// Carries out one request that waited for a room's logic, the first session's (in the
    /// order they began to wait) whose next request need wait no longer, and returns whose it
    /// was; `None` when every one left still waits. A cluster home answers each in turn.
    pub fn replay_one_waiting(&mut self) -> Option<SessionId> {
        let mut at = 0;
        // Sessions whose matchmaker's pick turned out away as well: not tried again in this call.
        let mut blocked = HashSet::new();
        while let Some(&id) = self.waiting_sessions.get(at) {
            if blocked.contains(&id) {
                at += 1;
                continue;
            }
            let Some(entry) = self.sessions.get_mut(&id) else {
                self.waiting_sessions.remove(at);
                continue;
            };
            let ready = entry.outlet.is_some();
            let head = if ready {
                entry.waiting.pop_front()
            } else {
                None
            };
            let Some(frame) = head else {
                entry.waiting.clear();
                self.waiting_sessions.remove(at);
                continue;
            };
            let more = !entry.waiting.is_empty();
            if self.waits_for_logic(&frame) {
                if let Some(entry) = self.sessions.get_mut(&id) {
                    entry.waiting.push_front(frame);
                }
                at += 1;
                continue;
            }
            if !more {
                self.waiting_sessions.remove(at);
            }
            if self.dispatch(id, frame) {
                // Its pick's logic is away too: back at the head of its session's requests
                // (`wait` put it there, and the session back in line if it had left it).
                blocked.insert(id);
                continue;
            }
            self.evict_overflowed();
            return Some(id);
        }
        None
    }

    /// Carries out one request (see `handle`). Returns whether it waits for a room's logic
    /// instead (a matchmaker's pick whose logic is away).
    fn dispatch(&mut self, id: SessionId, frame: ClientFrame) -> bool {
        let retry = (self.logic_pool && matches!(frame, ClientFrame::JoinOrCreate { .. }))
            .then(|| frame.clone());
        let reference = frame.reference();
        let result = match frame {
            ClientFrame::Join {
                room,
                password,
                create,
                ..
            } => self.join(id, room, password.as_deref(), create, reference),
            ClientFrame::Create { room, options, .. } => self.create(id, room, options, reference),
            ClientFrame::JoinOrCreate {
                filter, options, ..
            } => self.join_or_create(id, &filter, options, reference),
            ClientFrame::Leave { room, .. } => self.leave(id, &room),
            ClientFrame::Emit {
                room,
                event,
                data,
                echo,
                ..
            } => self.emit(id, room, event, data, echo, reference),
            ClientFrame::Send {
                to, event, data, ..
            } => self.send_direct(id, to, event, data),
            ClientFrame::Lock { room, .. } => self.set_lock(id, &room, true),
            ClientFrame::Unlock { room, .. } => self.set_lock(id, &room, false),
            ClientFrame::Kick { room, session, .. } => self.kick(id, &room, session),
            ClientFrame::SetMetadata { room, metadata, .. } => {
                self.set_metadata(id, &room, metadata)
            }
            ClientFrame::ListRooms { filter, limit, .. } => {
                let limit = limit.map_or(DEFAULT_LISTED_ROOMS, |n| n as usize);
                let rooms = self.list_rooms(&filter, limit.min(self.limits.max_listed_rooms));
                self.answer_list(id, reference, rooms)
            }
            ClientFrame::SubscribeLobby { filter, .. } => {
                let rooms = self.list_rooms(&filter, self.limits.max_listed_rooms);
                self.lobby.subscribe(id, filter);
                self.answer_list(id, reference, rooms)
            }
            ClientFrame::UnsubscribeLobby { .. } => {
                self.lobby.unsubscribe(id);
                Ok(Answered::No)
            }
            ClientFrame::UpdateState {
                room,
                ops,
                if_version,
                ..
            } => self.update_state(id, &room, ops, if_version),
            ClientFrame::Resume {
                session,
                token,
                rooms,
                ..
            } => {
                // The registry actor serves `resume` through its own message, which tells the
                // connection who it now is; here it is carried out all the same.
                let _ = self.resume(id, session, &token, &rooms, reference);
                Ok(Answered::Yes)
            }
        };
        if let (Err(RequestError::RoomBusy(_)), Some(frame)) = (&result, retry) {
            self.wait(id, frame, true);
            return true;
        }
        self.answer(id, reference, result);
        false
    }

    /// Answers a request: `ok` (if it had a `ref` and its handler did not answer already), or
    /// its error.
    fn answer(
        &mut self,
        id: SessionId,
        reference: Option<Ref>,
        result: Result<Answered, RequestError>,
    ) {
        match result {
            Ok(Answered::Yes) => {}
            Ok(Answered::No) => {
                if let Some(reference) = reference {
                    self.send_to(
                        id,
                        &ServerFrame::Ok {
                            reference,
                            data: None,
                        },
                    );
                }
            }
            Err(err) => self.send_error(id, reference, &err),
        }
    }

    /// Encodes the frame `build` makes with the room's next offset once, records it in the
    /// room's history, and delivers it to every member but `skip` (and the away). Returns the
    /// offset, or `None` if there is no such room.
    fn broadcast(
        &mut self,
        room_name: &str,
        skip: Option<SessionId>,
        build: impl FnOnce(u64) -> ServerFrame,
    ) -> Option<u64> {
        let room = self.rooms.get_mut(room_name)?;
        let offset = room.history.take_offset();
        if let Some(host) = &mut self.host {
            // The log gives the frame its offset and carries it to the members' nodes.
            let body = encode_server(&build(0));
            room.appended += body.len() as u64;
            host.appends.push(Append {
                room: room_name.to_owned(),
                provisional: offset,
                body,
                skip,
            });
            return Some(offset);
        }
        let frame = encode_server(&build(offset));
        room.appended += frame.len() as u64;
        let recipients = deliver_all(&room.members, &frame, skip, &mut self.overflowed);
        self.metrics.fanout.observe(recipients as f64);
        self.metrics.sent(recipients as u64, frame.len());
        let limits = HistoryLimits {
            frames: self.limits.history_frames,
            bytes: self.limits.history_bytes,
        };
        room.history.record(
            HistoryEntry {
                offset,
                frame,
                skip,
            },
            limits,
        );
        Some(offset)
    }

    /// Checks the registry's structural invariants; used by tests (and later by fuzzing).
    /// Returns a description of the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        // A cluster node takes over a dead node's rooms whatever its own count: `max_rooms`
        // bounds the rooms it makes.
        if self.rooms.len() > self.limits.max_rooms && self.host.is_none() {
            return Err("more rooms than max_rooms".into());
        }
        let scheduled = self
            .rooms
            .iter()
            .filter_map(|(name, r)| Some((r.logic.as_ref()?.scheduled()?, name.clone())))
            .collect::<std::collections::BTreeSet<_>>();
        if scheduled != self.logic_deadlines {
            return Err("the logic's wakes are not the rooms' own".into());
        }
        for (name, room) in &self.rooms {
            if room.members.is_empty() && room.dispose_when_empty {
                return Err(format!("room {name:?} is empty but still exists"));
            }
            if let Some(slot) = &room.logic {
                let wants = slot.held_ref().and_then(LogicRoom::next_deadline);
                if slot.scheduled() != wants {
                    return Err(format!(
                        "room {name:?}'s logic is woken when it does not ask"
                    ));
                }
            }
            if room.members.len() > room.max_members
                || room.max_members > self.limits.max_members_per_room
            {
                return Err(format!("room {name:?} is over its seats"));
            }
            let owner_ok = match room.owner {
                None => room.first_writer().is_none(),
                Some(owner) => room.is_member(owner) && !room.readers.contains(&owner),
            };
            if !owner_ok {
                return Err(format!("room {name:?} has owner {:?}", room.owner));
            }
            if room.state.encoded_len() > self.limits.max_state_bytes {
                return Err(format!("room {name:?} state is over max_state_bytes"));
            }
            if room.state.value_count() > self.limits.max_state_values {
                return Err(format!("room {name:?} state is over max_state_values"));
            }
            if room.pending_patches.len() as u64 > room.version {
                return Err(format!("room {name:?} holds more patches than versions"));
            }
            for member in &room.members {
                let Some(session) = self.sessions.get(&member.id) else {
                    return Err(format!(
                        "{} is in room {name:?} but is no session",
                        member.id
                    ));
                };
                if !session.rooms.contains(name) {
                    return Err(format!(
                        "{} is in room {name:?} but does not list it",
                        member.id
                    ));
                }
                if member.outlet.is_none() != session.away_since.is_some() {
                    return Err(format!("{} is away in one place only", member.id));
                }
            }
            if room.history.len() > self.limits.history_frames
                || room.history.bytes() > self.limits.history_bytes
            {
                return Err(format!("room {name:?} keeps more history than allowed"));
            }
        }
        for (id, entry) in &self.sessions {
            if entry.outlet.is_none() != entry.away_since.is_some() {
                return Err(format!(
                    "{id} has no outlet but is not away, or the reverse"
                ));
            }
            if entry.away_since.is_some() && entry.rooms.is_empty() {
                return Err(format!("{id} is away in no room"));
            }
            if entry.away_since.is_some() != self.away.contains(id) {
                return Err(format!("{id} is away but not counted, or the reverse"));
            }
            if entry.rooms.len() > self.limits.max_rooms_per_session {
                return Err(format!("{id} is over max_rooms_per_session"));
            }
            for name in &entry.rooms {
                let member = self.rooms.get(name).is_some_and(|r| r.is_member(*id));
                if !member {
                    return Err(format!("{id} lists room {name:?} but is not a member"));
                }
            }
        }
        if self.away.len() > self.limits.max_away_sessions
            || self.away.iter().any(|id| !self.sessions.contains_key(id))
        {
            return Err("the away set is over its bound or names a gone session".into());
        }
        if let Some(id) = self
            .lobby
            .subscriber_ids()
            .find(|id| !self.sessions.contains_key(id))
        {
            return Err(format!("lobby subscriber {id} is not a session"));
        }
        Ok(())
    }
}

/// Whether a request handler already sent its answer (a listing) or leaves `ok` to `handle`.
enum Answered {
    Yes,
    No,
}

/// Hands `frame` to every present member but `skip`, noting those whose budget is spent.
/// Returns how many took it.
fn deliver_all<O: Outlet>(
    members: &[Member<O>],
    frame: &Bytes,
    skip: Option<SessionId>,
    overflowed: &mut Vec<SessionId>,
) -> usize {
    let mut delivered = 0;
    for member in members {
        let Some(outlet) = &member.outlet else {
            continue;
        };
        if Some(member.id) == skip {
            continue;
        }
        if outlet.deliver(frame.clone()).is_ok() {
            delivered += 1;
        } else {
            overflowed.push(member.id);
        }
    }
    delivered
}

/// The sessions among `away` that went away (`since`) at least `grace` before `now`.
pub(crate) fn graces_over(
    away: &HashSet<SessionId>,
    now: Instant,
    grace: Duration,
    since: impl Fn(&SessionId) -> Option<Instant>,
) -> Vec<SessionId> {
    away.iter()
        .filter(|id| since(id).is_some_and(|t| now.duration_since(t) >= grace))
        .copied()
        .collect()
}

/// An unguessable room id, for rooms the server names (private rooms are joined by it).
pub(crate) fn new_room_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

mod backend;
mod host;
mod limits;
mod logic;
mod matchmaking;
mod resume;
mod rooms;
mod sessions;
mod state;

pub use self::backend::{MemberDetail, RoomDetail};
pub use self::host::{detail_of_checkpoint, Append, HostEffects, MemberCheckpoint, RoomCheckpoint};
pub use self::limits::{RegistryLimits, RequestError, DEFAULT_LISTED_ROOMS, MAX_PASSWORD_BYTES};
pub use self::matchmaking::best_candidate;
pub(crate) use self::matchmaking::match_rules;
pub use self::rooms::{can_join, may_send};
pub use self::sessions::holds_seats;

#[cfg(test)]
mod tests;
