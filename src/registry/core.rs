//! `Registry`, the sans-IO state machine of rooms, membership, ownership, matchmaking, shared
//! state, lobby subscriptions, and sessions that are away and may resume. Every method runs to
//! completion and speaks to sessions only through their `Outlet`: a frame is encoded once and
//! the same `Bytes` handed to every recipient (and kept in the room's history for replay).
//! Time and timers live outside: the owner calls `advance`, `flush_lobby` and
//! `flush_state_patches`.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// Glob patterns (`*`, `?`) naming the rooms an authenticated user may enter.
#[derive(Clone, Debug)]
pub struct RoomPatterns {
    compiled: Arc<[wildmatch::WildMatch]>,
    sources: Arc<[String]>,
}

impl RoomPatterns {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self {
            compiled: patterns
                .iter()
                .map(|p| wildmatch::WildMatch::new(p.as_ref()))
                .collect(),
            sources: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
        }
    }

    pub fn allows(&self, room: &str) -> bool {
        self.compiled.iter().any(|p| p.matches(room))
    }

    /// The patterns as given.
    pub fn sources(&self) -> &[String] {
        &self.sources
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
}

/// A room as the backend API reads it. It serializes as one map: the room info's fields, but
/// with `members` the list of members and the count as `member_count` (a flattened `RoomInfo`
/// would write the key `members` twice).
#[derive(Clone, Debug, PartialEq)]
pub struct RoomDetail {
    pub info: RoomInfo,
    pub private: bool,
    pub members: Vec<MemberDetail>,
    pub state: Document,
    pub version: u64,
    pub epoch: String,
    pub offset: u64,
}

impl serde::Serialize for RoomDetail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Detail<'a> {
            room: &'a str,
            member_count: u32,
            max_members: u32,
            locked: bool,
            locked_by_owner: bool,
            password: bool,
            owner: Option<SessionId>,
            metadata: &'a Metadata,
            private: bool,
            members: &'a [MemberDetail],
            state: &'a Document,
            version: u64,
            epoch: &'a str,
            offset: u64,
        }
        // Taken apart whole, so that a field added to RoomInfo cannot be left out here.
        let RoomInfo {
            room,
            members: member_count,
            max_members,
            locked,
            locked_by_owner,
            password,
            owner,
            metadata,
        } = &self.info;
        Detail {
            room,
            member_count: *member_count,
            max_members: *max_members,
            locked: *locked,
            locked_by_owner: *locked_by_owner,
            password: *password,
            owner: *owner,
            metadata,
            private: self.private,
            members: &self.members,
            state: &self.state,
            version: self.version,
            epoch: &self.epoch,
            offset: self.offset,
        }
        .serialize(serializer)
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MemberDetail {
    pub session: SessionId,
    pub user: Option<String>,
    pub away: bool,
}

/// The nil session id: the `from` of events published through the backend API.
pub const BACKEND: SessionId = SessionId::NIL;

/// Rooms a `list_rooms` without `limit` lists (fewer if `max_listed_rooms` is lower).
pub const DEFAULT_LISTED_ROOMS: usize = 100;
/// Longest room password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 128;

/// The limits the registry enforces, and how it batches.
#[derive(Clone, Debug)]
pub struct RegistryLimits {
    pub max_rooms_per_session: usize,
    pub max_members_per_room: usize,
    pub max_room_name_bytes: usize,
    pub max_event_name_bytes: usize,
    pub max_rooms: usize,
    pub max_state_bytes: usize,
    /// Most MessagePack values in one room's state (`Document::value_count`): what bounds
    /// its memory, which the encoded bytes do not.
    pub max_state_values: usize,
    pub max_metadata_bytes: usize,
    /// Most rooms one `room_list` carries.
    pub max_listed_rooms: usize,
    /// Bytes of room listings one `lobby` frame carries at most (see `Lobby`).
    pub lobby_frame_bytes: usize,
    /// Hold state patches until `flush_state_patches` (true) or send each at once (false).
    pub batch_state_patches: bool,
    /// A room's held patches are sent early once they reach this many bytes.
    pub max_patch_batch_bytes: usize,
    /// How long a dropped session keeps its seats; zero removes it at once.
    pub reconnect_grace: Duration,
    /// Frames and bytes of history each room keeps for replay.
    pub history_frames: usize,
    pub history_bytes: usize,
    /// Most bytes one `resume` replays in all; rooms beyond it get a snapshot instead.
    pub replay_budget_bytes: usize,
    /// Most sessions held away at once; a drop beyond it removes the session at once.
    pub max_away_sessions: usize,
}

impl RegistryLimits {
    /// The rules of a room made with `options`, checked against these limits.
    pub(crate) fn rules_from(&self, options: RoomOptions) -> Result<RoomRules, RequestError> {
        let limit = self.max_members_per_room;
        let max_members = match options.max_members {
            None => limit,
            Some(n) if n >= 1 && (n as usize) <= limit => n as usize,
            Some(n) => {
                return Err(RequestError::InvalidOptions(format!(
                    "max_members is {n}; it must be 1 to {limit}"
                )))
            }
        };
        self.check_metadata(&options.metadata)?;
        if options
            .password
            .as_ref()
            .is_some_and(|p| p.len() > MAX_PASSWORD_BYTES)
        {
            return Err(RequestError::InvalidOptions(format!(
                "passwords are at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(RoomRules {
            max_members,
            private: options.private,
            password: options.password,
            metadata: options.metadata,
            dispose_when_empty: options.dispose_when_empty,
        })
    }

    /// The rules of a room made implicitly by `join`.
    pub(crate) fn default_rules(&self) -> RoomRules {
        RoomRules {
            max_members: self.max_members_per_room,
            private: false,
            password: None,
            metadata: Metadata::new(),
            dispose_when_empty: true,
        }
    }

    /// The bounds every room's state stays within, on one node and in a cluster alike.
    pub(crate) fn state_limits(&self) -> StateLimits {
        StateLimits {
            max_bytes: self.max_state_bytes,
            max_values: self.max_state_values,
        }
    }

    pub(crate) fn check_metadata(&self, metadata: &Metadata) -> Result<(), RequestError> {
        let size = encoded_len(metadata);
        let max = self.max_metadata_bytes;
        if size > max {
            return Err(RequestError::InvalidOptions(format!(
                "metadata is {size} bytes encoded, over the limit of {max}"
            )));
        }
        // Metadata is what listings show and filters match, `GET /rooms` in JSON included,
        // and JSON names an object's members by strings only: a map inside metadata keyed
        // by anything else could not be listed as it is.
        if metadata.values().any(has_key_not_a_string) {
            return Err(RequestError::InvalidOptions(
                "the keys of maps inside metadata must be strings".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_room_name(&self, name: &str) -> Result<(), RequestError> {
        let max = self.max_room_name_bytes;
        if name.is_empty() || name.len() > max {
            return Err(RequestError::InvalidRoom { max });
        }
        Ok(())
    }

    pub(crate) fn check_event_name(&self, name: &str) -> Result<(), RequestError> {
        let max = self.max_event_name_bytes;
        if name.is_empty() || name.len() > max {
            return Err(RequestError::InvalidEvent { max });
        }
        Ok(())
    }
}

/// Why a request was refused. Each maps to one protocol `ErrorCode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("room names are 1 to {max} bytes long")]
    InvalidRoom { max: usize },
    #[error("event names are 1 to {max} bytes long")]
    InvalidEvent { max: usize },
    #[error("not a member of room {0:?}")]
    NotInRoom(String),
    #[error("already a member of room {0:?}")]
    AlreadyJoined(String),
    #[error("a session may be in at most {max} rooms")]
    TooManyRooms { max: usize },
    #[error("room {room:?} is full ({max} members)")]
    RoomFull { room: String, max: usize },
    #[error("no session {0} shares a room with you")]
    UnknownSession(SessionId),
    #[error("room {0:?} already exists")]
    RoomExists(String),
    #[error("there is no room {0:?}")]
    RoomNotFound(String),
    #[error("room {0:?} is locked")]
    RoomLocked(String),
    #[error("wrong password for room {0:?}")]
    WrongPassword(String),
    #[error("only the owner of room {0:?} may do that")]
    NotOwner(String),
    #[error("the state is at version {current}, not {expected}")]
    VersionConflict { expected: u64, current: u64 },
    #[error("{0}")]
    StateTooLarge(StateError),
    #[error("{0}")]
    InvalidPath(StateError),
    #[error("{0}")]
    InvalidOptions(String),
    #[error("the server holds its maximum of {max} rooms")]
    RoomLimit { max: usize },
    #[error("{0}")]
    ResumeFailed(&'static str),
    #[error("you may not enter room {0:?}")]
    Forbidden(String),
    #[error("too many requests like this one are waiting; it was not carried out")]
    Overloaded,
    #[error("the cluster cannot be reached now ({0}); nothing was done, and the request may be sent again")]
    Unavailable(String),
    #[error("the cluster did not answer ({0}); the request may or may not have been carried out")]
    OutcomeUnknown(String),
}

impl From<StateError> for RequestError {
    /// A refused state batch: over a bound (`state_too_large`) or a bad path (`invalid_path`).
    fn from(err: StateError) -> Self {
        match err {
            StateError::TooLarge { .. } | StateError::TooManyValues { .. } => {
                Self::StateTooLarge(err)
            }
            StateError::BadPathLength { .. } | StateError::ThroughValue { .. } => {
                Self::InvalidPath(err)
            }
        }
    }
}

impl RequestError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRoom { .. } => ErrorCode::InvalidRoom,
            Self::InvalidEvent { .. } => ErrorCode::InvalidEvent,
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::AlreadyJoined(_) => ErrorCode::AlreadyJoined,
            Self::TooManyRooms { .. } => ErrorCode::TooManyRooms,
            Self::RoomFull { .. } => ErrorCode::RoomFull,
            Self::UnknownSession(_) => ErrorCode::UnknownSession,
            Self::RoomExists(_) => ErrorCode::RoomExists,
            Self::RoomNotFound(_) => ErrorCode::RoomNotFound,
            Self::RoomLocked(_) => ErrorCode::RoomLocked,
            Self::WrongPassword(_) => ErrorCode::WrongPassword,
            Self::NotOwner(_) => ErrorCode::NotOwner,
            Self::VersionConflict { .. } => ErrorCode::VersionConflict,
            Self::StateTooLarge(_) => ErrorCode::StateTooLarge,
            Self::InvalidPath(_) => ErrorCode::InvalidPath,
            Self::InvalidOptions(_) => ErrorCode::InvalidOptions,
            Self::RoomLimit { .. } => ErrorCode::RoomLimit,
            Self::ResumeFailed(_) => ErrorCode::ResumeFailed,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            Self::Overloaded => ErrorCode::Overloaded,
        }
    }
}

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
}

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
            metrics,
        }
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
        let holds_seats = matches!(reason, LeaveReason::Dropped | LeaveReason::Timeout)
            && !self.limits.reconnect_grace.is_zero()
            && !entry.rooms.is_empty()
            && !self.closing
            && self.away.len() < self.limits.max_away_sessions;
        if !holds_seats {
            self.remove_session(id, reason);
            self.evict_overflowed();
            return;
        }
        entry.outlet = None;
        entry.away_since = Some(self.now);
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
        }
        self.evict_overflowed();
    }

    /// Moves the registry's clock to `now` and removes the away sessions whose grace is over
    /// (their rooms hear `left`, reason `timeout`).
    pub fn advance(&mut self, now: Instant) {
        self.now = now;
        let expired = graces_over(&self.away, now, self.limits.reconnect_grace, |id| {
            self.sessions.get(id).and_then(|e| e.away_since)
        });
        for id in expired {
            self.remove_session(id, LeaveReason::Timeout);
        }
        self.evict_overflowed();
    }

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

    fn take_over(
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
            }
        }
        self.metrics.resume(if all_recovered {
            ResumeOutcome::Replayed
        } else {
            ResumeOutcome::Snapshot
        });
        Ok(session)
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

    /// Emits `event` into `room_name` on behalf of the backend (`from` is the nil id). Returns
    /// the event's offset, or `None` if the room does not exist.
    pub fn publish(&mut self, room_name: &str, event: String, data: Value) -> Option<u64> {
        if !self.rooms.contains_key(room_name) {
            return None;
        }
        let offset = self.broadcast(room_name, None, |offset| {
            ServerFrame::Event(EventFrame {
                room: room_name.to_owned(),
                from: BACKEND,
                event,
                data,
                offset,
            })
        });
        self.evict_overflowed();
        offset
    }

    /// Everything about one room, private or not, for the backend API.
    pub fn room_detail(&self, room_name: &str) -> Option<RoomDetail> {
        let room = self.rooms.get(room_name)?;
        Some(RoomDetail {
            info: room.info(room_name),
            private: room.private,
            members: room
                .members
                .iter()
                .map(|m| MemberDetail {
                    session: m.id,
                    user: self.user_of(m.id),
                    away: m.outlet.is_none(),
                })
                .collect(),
            state: room.state.clone(),
            version: room.version,
            epoch: room.history.epoch.clone(),
            offset: room.history.next_offset,
        })
    }

    /// Every room, private ones included and said to be, oldest first, at most `limit`; for
    /// the backend API.
    pub fn all_rooms(&self, limit: usize) -> Vec<Listing> {
        let mut rooms: Vec<(&String, &Room<O>)> = self.rooms.iter().collect();
        rooms.sort_unstable_by_key(|(_, room)| room.created);
        rooms
            .into_iter()
            .take(limit)
            .map(|(name, room)| room.listing(name))
            .collect()
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

    /// Where room `room_name`'s history is: its epoch and the offset of its next frame.
    pub fn position_of(&self, room_name: &str) -> Option<(String, u64)> {
        self.rooms
            .get(room_name)
            .map(|r| (r.history.epoch.clone(), r.history.next_offset))
    }

    fn user_of(&self, id: SessionId) -> Option<String> {
        self.sessions.get(&id).and_then(|e| e.profile.user.clone())
    }

    /// The public rooms matching `filter`, oldest first, at most `limit`.
    pub fn list_rooms(&self, filter: &RoomFilter, limit: usize) -> Vec<RoomInfo> {
        let mut matching: Vec<(&String, &Room<O>)> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.matches(filter))
            .collect();
        matching.sort_unstable_by_key(|(_, room)| room.created);
        matching
            .into_iter()
            .take(limit)
            .map(|(name, room)| room.info(name))
            .collect()
    }

    /// Sends every lobby subscriber the changes since the last call, coalesced.
    pub fn flush_lobby(&mut self) {
        for (frame, subscribers) in self.lobby.flush(&self.rooms) {
            for id in subscribers {
                self.deliver(id, frame.clone());
            }
        }
        self.evict_overflowed();
    }

    /// Broadcasts every room's held state patches.
    pub fn flush_state_patches(&mut self) {
        for room in std::mem::take(&mut self.rooms_with_patches) {
            self.broadcast_patches(&room);
        }
        self.evict_overflowed();
    }

    /// Carries out one client request from session `id` and answers its `ref`: one `ok` on
    /// success (a `room_list` for listings), one `error` on failure (errors are sent even
    /// without a `ref`).
    pub fn handle(&mut self, id: SessionId, frame: ClientFrame) {
        // Unknown sessions, and away ones (no connection to ask), are not served.
        if self.sessions.get(&id).is_none_or(|e| e.outlet.is_none()) {
            return;
        }
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
            } => self.emit(id, room, event, data, echo),
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
        match result {
            Ok(Answered::Yes) => {}
            Ok(Answered::No) => {
                if let Some(reference) = reference {
                    self.send_to(id, &ServerFrame::Ok { reference });
                }
            }
            Err(err) => self.send_error(id, reference, &err),
        }
        self.evict_overflowed();
    }

    fn answer_list(
        &mut self,
        id: SessionId,
        reference: Option<Ref>,
        rooms: Vec<RoomInfo>,
    ) -> Result<Answered, RequestError> {
        self.send_to(id, &ServerFrame::RoomList { reference, rooms });
        Ok(Answered::Yes)
    }

    /// Whether session `id`'s token lets it enter `room_name`.
    fn may_enter(&self, id: SessionId, room_name: &str) -> bool {
        self.sessions
            .get(&id)
            .and_then(|e| e.profile.rooms.as_ref())
            .is_none_or(|patterns| patterns.allows(room_name))
    }

    fn check_may_enter(&self, id: SessionId, room_name: &str) -> Result<(), RequestError> {
        if self.may_enter(id, room_name) {
            Ok(())
        } else {
            Err(RequestError::Forbidden(room_name.to_owned()))
        }
    }

    /// Checks that session `id` may join one more room, and not `room_name` twice.
    fn check_can_join(&self, id: SessionId, room_name: Option<&str>) -> Result<(), RequestError> {
        let entry = self
            .sessions
            .get(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        if let Some(name) = room_name {
            if entry.rooms.iter().any(|r| r == name) {
                return Err(RequestError::AlreadyJoined(name.to_owned()));
            }
            self.check_may_enter(id, name)?;
        }
        if entry.rooms.len() >= self.limits.max_rooms_per_session {
            return Err(RequestError::TooManyRooms {
                max: self.limits.max_rooms_per_session,
            });
        }
        Ok(())
    }

    fn join(
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
        self.admit(id, &room_name, reference);
        Ok(Answered::No)
    }

    fn create(
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
        self.admit(id, &room_name, reference);
        Ok(Answered::No)
    }

    fn join_or_create(
        &mut self,
        id: SessionId,
        filter: &RoomFilter,
        mut options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        // The room made here must match the same filter next time, or every racer would make
        // its own: the filter's conditions become the new room's metadata.
        if let Some(mode) = &filter.mode {
            options
                .metadata
                .insert("mode".to_owned(), Value::from(mode.as_str()));
        }
        options.metadata.extend(filter.metadata.clone());
        let rules = self.limits.rules_from(options)?;
        self.check_can_join(id, None)?;
        let member_of = self.sessions.get(&id).map(|e| &e.rooms);
        let best = self
            .rooms
            .iter()
            .filter(|(name, room)| {
                room.takes_matchmaking(filter)
                    && !member_of.is_some_and(|rooms| rooms.contains(name))
                    && self.may_enter(id, name)
            })
            .max_by_key(|(_, room)| (room.members.len(), std::cmp::Reverse(room.created)))
            .map(|(name, _)| name.clone());
        let room_name = match best {
            Some(name) => name,
            None => {
                let name = new_room_id();
                self.check_may_enter(id, &name)?;
                self.open_room(&name, rules)?;
                name
            }
        };
        self.admit(id, &room_name, reference);
        Ok(Answered::No)
    }

    /// Creates an empty room (which the caller then fills), within `max_rooms`.
    fn open_room(&mut self, name: &str, rules: RoomRules) -> Result<(), RequestError> {
        if self.rooms.len() >= self.limits.max_rooms {
            return Err(RequestError::RoomLimit {
                max: self.limits.max_rooms,
            });
        }
        let private = rules.private;
        self.rooms_created += 1;
        self.rooms
            .insert(name.to_owned(), Room::new(rules, self.rooms_created));
        if !private {
            self.lobby.added(name);
        }
        Ok(())
    }

    /// Makes `id` a member of the existing room `room_name`; every check has been made. The
    /// others hear `presence`, the newcomer gets `joined` with the whole room.
    fn admit(&mut self, id: SessionId, room_name: &str, reference: Option<Ref>) {
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
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        room.members.push(Member { id, outlet });
        if room.owner.is_none() {
            room.owner = Some(id);
        }
        let now_locked = room.is_locked();
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.rooms.push(room_name.to_owned());
        }
        if let Some(joined) = self.joined_frame(room_name, reference) {
            self.send_to(id, &joined);
        }
        if now_locked != was_locked {
            self.announce_room_update(room_name, Some(id));
        }
        self.room_changed(room_name);
    }

    /// `joined` for a member of `room_name`: the whole room as it is now.
    fn joined_frame(&self, room_name: &str, reference: Option<Ref>) -> Option<ServerFrame> {
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
        }))
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
        let frame = encode_server(&build(offset));
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

    fn leave(&mut self, id: SessionId, room_name: &str) -> Result<Answered, RequestError> {
        self.limits.check_room_name(room_name)?;
        self.drop_membership(id, room_name, LeaveReason::Leave)?;
        Ok(Answered::No)
    }

    /// Takes `id` out of `room_name` for `reason`: the others hear `presence`, `id` gets `left`.
    fn drop_membership(
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

    fn emit(
        &mut self,
        id: SessionId,
        room_name: String,
        event: String,
        data: Value,
        echo: bool,
    ) -> Result<Answered, RequestError> {
        self.limits.check_room_name(&room_name)?;
        self.limits.check_event_name(&event)?;
        // Membership is checked on the session's side: a handful of rooms, not a room's
        // possibly thousands of members, on the hottest path.
        let is_member = self
            .sessions
            .get(&id)
            .is_some_and(|e| e.rooms.contains(&room_name));
        if !is_member || !self.rooms.contains_key(&room_name) {
            return Err(RequestError::NotInRoom(room_name));
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

    fn send_direct(
        &mut self,
        id: SessionId,
        to: SessionId,
        event: String,
        data: Value,
    ) -> Result<Answered, RequestError> {
        self.limits.check_event_name(&event)?;
        let shares_room = match (self.sessions.get(&id), self.sessions.get(&to)) {
            (Some(from), Some(target)) => from.rooms.iter().any(|r| target.rooms.contains(r)),
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

    /// The room `room_name` when `id` is one of its members.
    fn member_room(
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
    fn owned_room(&mut self, id: SessionId, room_name: &str) -> Result<&mut Room<O>, RequestError> {
        self.limits.check_room_name(room_name)?;
        let room = self.member_room(id, room_name)?;
        if room.owner != Some(id) {
            return Err(RequestError::NotOwner(room_name.to_owned()));
        }
        Ok(room)
    }

    fn set_lock(
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

    fn kick(
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

    fn set_metadata(
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

    fn update_state(
        &mut self,
        id: SessionId,
        room_name: &str,
        ops: Vec<StateOp>,
        if_version: Option<u64>,
    ) -> Result<Answered, RequestError> {
        self.limits.check_room_name(room_name)?;
        let limits = self.limits.clone();
        let room = self.member_room(id, room_name)?;
        if let Some(expected) = if_version {
            if expected != room.version {
                return Err(RequestError::VersionConflict {
                    expected,
                    current: room.version,
                });
            }
        }
        room.state.apply(&ops, limits.state_limits())?;
        room.version += 1;
        let patch = StatePatch {
            version: room.version,
            author: id,
            ops,
        };
        room.pending_bytes += encoded_len(&patch);
        room.pending_patches.push(patch);
        let send_now =
            !limits.batch_state_patches || room.pending_bytes >= limits.max_patch_batch_bytes;
        if send_now {
            self.broadcast_patches(room_name);
        } else if room.pending_patches.len() == 1 {
            self.rooms_with_patches.push(room_name.to_owned());
        }
        Ok(Answered::No)
    }

    /// Sends the room's held patches, if any, to its members as one `state_patch`.
    fn broadcast_patches(&mut self, room_name: &str) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        if room.pending_patches.is_empty() {
            return;
        }
        room.pending_bytes = 0;
        let patches = std::mem::take(&mut room.pending_patches);
        self.broadcast(room_name, None, |offset| {
            ServerFrame::StatePatch(StatePatchFrame {
                room: room_name.to_owned(),
                patches,
                offset,
            })
        });
    }

    /// Tells the room's members (all but `skip`) its owner, lock and metadata as they are now.
    fn announce_room_update(&mut self, room_name: &str, skip: Option<SessionId>) {
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
    fn room_changed(&mut self, room_name: &str) {
        if self.rooms.get(room_name).is_some_and(|r| !r.private) {
            self.lobby.changed(room_name);
        }
    }

    fn send_error(&mut self, id: SessionId, reference: Option<Ref>, err: &RequestError) {
        self.metrics.error(err.code());
        self.send_to(
            id,
            &ServerFrame::Error(ErrorFrame {
                reference,
                code: err.code(),
                message: err.to_string(),
            }),
        );
    }

    fn send_to(&mut self, id: SessionId, frame: &ServerFrame) {
        self.deliver(id, encode_server(frame));
    }

    fn deliver(&mut self, id: SessionId, frame: Bytes) {
        if let Some(outlet) = self.sessions.get(&id).and_then(|e| e.outlet.as_ref()) {
            let len = frame.len();
            if outlet.deliver(frame).is_err() {
                self.overflowed.push(id);
            } else {
                self.metrics.sent(1, len);
            }
        }
    }

    /// Takes `id` out of `room_name`'s members and tells the others. An owner leaving hands
    /// the room to the oldest member; an empty room is dropped unless it was made to stay.
    /// The caller has already removed the room from the session's own list.
    fn remove_member(&mut self, room_name: &str, id: SessionId, reason: LeaveReason) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let before = (room.owner, room.is_locked());
        if !room.remove(id) {
            return;
        }
        if room.members.is_empty() {
            if room.dispose_when_empty {
                let private = room.private;
                self.rooms.remove(room_name);
                self.rooms_with_patches.retain(|r| r != room_name);
                if !private {
                    self.lobby.removed(room_name);
                }
            } else {
                // Nobody is left to hear held patches; the state already holds them.
                room.pending_patches.clear();
                room.pending_bytes = 0;
                self.room_changed(room_name);
            }
            return;
        }
        let after = (room.owner, room.is_locked());
        if self.closing {
            return;
        }
        let user = self.user_of(id);
        self.broadcast(room_name, None, |offset| {
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
    }

    /// Removes a session, its memberships and its lobby subscription; returns its outlet
    /// (`None` inside if it was away) if it was known.
    fn remove_session(&mut self, id: SessionId, reason: LeaveReason) -> Option<Option<O>> {
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
    fn evict_overflowed(&mut self) {
        while let Some(id) = self.overflowed.pop() {
            if let Some(outlet) = self.remove_session(id, LeaveReason::SlowConsumer) {
                self.metrics.slow_consumer_evictions.inc();
                if let Some(outlet) = outlet {
                    outlet.close(Close::Evicted(LeaveReason::SlowConsumer));
                }
            }
        }
    }

    /// Checks the registry's structural invariants; used by tests (and later by fuzzing).
    /// Returns a description of the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.rooms.len() > self.limits.max_rooms {
            return Err("more rooms than max_rooms".into());
        }
        for (name, room) in &self.rooms {
            if room.members.is_empty() && room.dispose_when_empty {
                return Err(format!("room {name:?} is empty but still exists"));
            }
            if room.members.len() > room.max_members
                || room.max_members > self.limits.max_members_per_room
            {
                return Err(format!("room {name:?} is over its seats"));
            }
            let owner_ok = match room.owner {
                None => room.members.is_empty(),
                Some(owner) => room.is_member(owner),
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

/// Whether `value` holds, at any depth, a map with a key that is not a UTF-8 string. Walked
/// with a stack of its own: what a peer sent is bounded by `max_depth`, but this need not
/// rely on it.
fn has_key_not_a_string(value: &Value) -> bool {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    if key.as_str().is_none() {
                        return true;
                    }
                    pending.push(value);
                }
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    false
}

/// An unguessable room id, for rooms the server names (private rooms are joined by it).
pub(crate) fn new_room_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests;
