//! `Registry`, the sans-IO state machine of rooms, membership, ownership, matchmaking, shared
//! state and lobby subscriptions. Every method runs to completion and speaks to sessions only
//! through their `Outlet`: a frame is encoded once and the same `Bytes` handed to every
//! recipient. Timers live outside: the owner calls `flush_lobby` and `flush_state_patches`.

use std::collections::HashMap;

use bytes::Bytes;
use parlor_protocol::{
    encode_server, encoded_len, ClientFrame, DirectFrame, ErrorCode, ErrorFrame, EventFrame,
    JoinedFrame, LeaveReason, Metadata, PresenceFrame, PresenceStatus, Ref, RoomFilter, RoomInfo,
    RoomOptions, RoomUpdateFrame, ServerFrame, SessionId, StateError, StateOp, StatePatch,
    StatePatchFrame, Value,
};

use super::lobby::Lobby;
use super::room::{Room, RoomRules};

/// A session's outbound budget is spent: the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound budget exceeded")]
pub struct Overflow;

/// How the registry reaches one session.
pub trait Outlet: Clone {
    /// Queues an encoded frame for the session, or fails when its outbound budget is spent.
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow>;
    /// Tells the session that the registry has removed it and it must close.
    fn evict(&self, reason: LeaveReason);
}

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
    pub max_metadata_bytes: usize,
    /// Most rooms one `room_list` carries.
    pub max_listed_rooms: usize,
    /// Hold state patches until `flush_state_patches` (true) or send each at once (false).
    pub batch_state_patches: bool,
    /// A room's held patches are sent early once they reach this many bytes.
    pub max_patch_batch_bytes: usize,
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
            Self::RoomLocked(_) => ErrorCode::RoomLocked,
            Self::WrongPassword(_) => ErrorCode::WrongPassword,
            Self::NotOwner(_) => ErrorCode::NotOwner,
            Self::VersionConflict { .. } => ErrorCode::VersionConflict,
            Self::StateTooLarge(_) => ErrorCode::StateTooLarge,
            Self::InvalidPath(_) => ErrorCode::InvalidPath,
            Self::InvalidOptions(_) => ErrorCode::InvalidOptions,
            Self::RoomLimit { .. } => ErrorCode::RoomLimit,
        }
    }
}

struct SessionEntry<O> {
    outlet: O,
    /// Rooms this session is in, in the order it joined them.
    rooms: Vec<String>,
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
}

impl<O: Outlet> Registry<O> {
    pub fn new(limits: RegistryLimits) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            lobby: Lobby::default(),
            rooms_with_patches: Vec::new(),
            rooms_created: 0,
            overflowed: Vec::new(),
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Registers a new session, in no room yet.
    pub fn connect(&mut self, id: SessionId, outlet: O) {
        self.sessions.insert(
            id,
            SessionEntry {
                outlet,
                rooms: Vec::new(),
            },
        );
    }

    /// Removes a session that has ended: it leaves every room, and the members who remain are
    /// told why. Unknown ids (already evicted) are ignored.
    pub fn disconnect(&mut self, id: SessionId, reason: LeaveReason) {
        self.remove_session(id, reason);
        self.evict_overflowed();
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
        if !self.sessions.contains_key(&id) {
            return;
        }
        let reference = frame.reference();
        let result = match frame {
            ClientFrame::Join { room, password, .. } => {
                self.join(id, room, password.as_deref(), reference)
            }
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
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        self.check_room_name(&room_name)?;
        self.check_can_join(id, Some(&room_name))?;
        match self.rooms.get(&room_name) {
            None => {
                let rules = self.default_rules();
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
                self.check_room_name(&name)?;
                if self.rooms.contains_key(&name) {
                    return Err(RequestError::RoomExists(name));
                }
                name
            }
            None => new_room_id(),
        };
        let rules = self.rules_from(options)?;
        self.check_can_join(id, None)?;
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
        let rules = self.rules_from(options)?;
        self.check_can_join(id, None)?;
        let member_of = self.sessions.get(&id).map(|e| &e.rooms);
        let best = self
            .rooms
            .iter()
            .filter(|(name, room)| {
                room.takes_matchmaking(filter)
                    && !member_of.is_some_and(|rooms| rooms.contains(name))
            })
            .max_by_key(|(_, room)| (room.members.len(), std::cmp::Reverse(room.created)))
            .map(|(name, _)| name.clone());
        let room_name = match best {
            Some(name) => name,
            None => {
                let name = new_room_id();
                self.open_room(&name, rules)?;
                name
            }
        };
        self.admit(id, &room_name, reference);
        Ok(Answered::No)
    }

    /// The rules of a room made implicitly by `join`.
    fn default_rules(&self) -> RoomRules {
        RoomRules {
            max_members: self.limits.max_members_per_room,
            private: false,
            password: None,
            metadata: Metadata::new(),
            dispose_when_empty: true,
        }
    }

    fn rules_from(&self, options: RoomOptions) -> Result<RoomRules, RequestError> {
        let limit = self.limits.max_members_per_room;
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

    fn check_metadata(&self, metadata: &Metadata) -> Result<(), RequestError> {
        let size = encoded_len(metadata);
        let max = self.limits.max_metadata_bytes;
        if size > max {
            return Err(RequestError::InvalidOptions(format!(
                "metadata is {size} bytes encoded, over the limit of {max}"
            )));
        }
        Ok(())
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
        let Some(outlet) = self.sessions.get(&id).map(|e| e.outlet.clone()) else {
            return;
        };
        // Patches held for the members already there go first, so that the newcomer's
        // snapshot is exactly what they have after them.
        self.broadcast_patches(room_name);
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let was_locked = room.is_locked();
        let presence = encode_server(&ServerFrame::Presence(PresenceFrame {
            room: room_name.to_owned(),
            session: id,
            status: PresenceStatus::Joined,
            reason: None,
        }));
        deliver_all(&room.members, &presence, None, &mut self.overflowed);
        room.members.push((id, outlet));
        if room.owner.is_none() {
            room.owner = Some(id);
        }
        let joined = ServerFrame::Joined(JoinedFrame {
            reference,
            room: room_name.to_owned(),
            members: room.member_ids(),
            owner: room.owner,
            max_members: u32::try_from(room.max_members).unwrap_or(u32::MAX),
            locked: room.is_locked(),
            private: room.private,
            metadata: room.metadata.clone(),
            state: room.state.clone(),
            version: room.version,
        });
        let now_locked = room.is_locked();
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.rooms.push(room_name.to_owned());
        }
        self.send_to(id, &joined);
        if now_locked != was_locked {
            self.announce_room_update(room_name, Some(id));
        }
        self.room_changed(room_name);
    }

    fn leave(&mut self, id: SessionId, room_name: &str) -> Result<Answered, RequestError> {
        self.check_room_name(room_name)?;
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
        self.remove_member(room_name, id, reason);
        self.send_to(
            id,
            &ServerFrame::Left {
                room: room_name.to_owned(),
                reason,
            },
        );
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
        self.check_room_name(&room_name)?;
        self.check_event_name(&event)?;
        // Membership is checked on the session's side: a handful of rooms, not a room's
        // possibly thousands of members, on the hottest path.
        let is_member = self
            .sessions
            .get(&id)
            .is_some_and(|e| e.rooms.contains(&room_name));
        let room = match self.rooms.get_mut(&room_name) {
            Some(room) if is_member => room,
            _ => return Err(RequestError::NotInRoom(room_name)),
        };
        let offset = room.take_offset();
        let frame = encode_server(&ServerFrame::Event(EventFrame {
            room: room_name,
            from: id,
            event,
            data,
            offset,
        }));
        let skip = (!echo).then_some(id);
        deliver_all(&room.members, &frame, skip, &mut self.overflowed);
        Ok(Answered::No)
    }

    fn send_direct(
        &mut self,
        id: SessionId,
        to: SessionId,
        event: String,
        data: Value,
    ) -> Result<Answered, RequestError> {
        self.check_event_name(&event)?;
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
        self.check_room_name(room_name)?;
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
        self.check_metadata(&metadata)?;
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
        self.check_room_name(room_name)?;
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
        room.state
            .apply(&ops, limits.max_state_bytes)
            .map_err(|err| match err {
                StateError::TooLarge { .. } => RequestError::StateTooLarge(err),
                _ => RequestError::InvalidPath(err),
            })?;
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
        let frame = encode_server(&ServerFrame::StatePatch(StatePatchFrame {
            room: room_name.to_owned(),
            patches: std::mem::take(&mut room.pending_patches),
        }));
        deliver_all(&room.members, &frame, None, &mut self.overflowed);
    }

    /// Tells the room's members (all but `skip`) its owner, lock and metadata as they are now.
    fn announce_room_update(&mut self, room_name: &str, skip: Option<SessionId>) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let frame = encode_server(&ServerFrame::RoomUpdate(RoomUpdateFrame {
            room: room_name.to_owned(),
            owner: room.owner,
            locked: room.is_locked(),
            metadata: room.metadata.clone(),
        }));
        deliver_all(&room.members, &frame, skip, &mut self.overflowed);
    }

    /// Notes for the lobby that a public room changed.
    fn room_changed(&mut self, room_name: &str) {
        if self.rooms.get(room_name).is_some_and(|r| !r.private) {
            self.lobby.changed(room_name);
        }
    }

    fn check_room_name(&self, name: &str) -> Result<(), RequestError> {
        let max = self.limits.max_room_name_bytes;
        if name.is_empty() || name.len() > max {
            return Err(RequestError::InvalidRoom { max });
        }
        Ok(())
    }

    fn check_event_name(&self, name: &str) -> Result<(), RequestError> {
        let max = self.limits.max_event_name_bytes;
        if name.is_empty() || name.len() > max {
            return Err(RequestError::InvalidEvent { max });
        }
        Ok(())
    }

    fn send_error(&mut self, id: SessionId, reference: Option<Ref>, err: &RequestError) {
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
        if let Some(entry) = self.sessions.get(&id) {
            if entry.outlet.deliver(frame).is_err() {
                self.overflowed.push(id);
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
        let presence = encode_server(&ServerFrame::Presence(PresenceFrame {
            room: room_name.to_owned(),
            session: id,
            status: PresenceStatus::Left,
            reason: Some(reason),
        }));
        deliver_all(&room.members, &presence, None, &mut self.overflowed);
        if (room.owner, room.is_locked()) != before {
            self.announce_room_update(room_name, None);
        }
        self.room_changed(room_name);
    }

    /// Removes a session, its memberships and its lobby subscription; returns its outlet if it
    /// was known.
    fn remove_session(&mut self, id: SessionId, reason: LeaveReason) -> Option<O> {
        let entry = self.sessions.remove(&id)?;
        self.lobby.unsubscribe(id);
        for room in &entry.rooms {
            self.remove_member(room, id, reason);
        }
        Some(entry.outlet)
    }

    /// Evicts every session that overflowed its outbound budget. Telling the remaining members
    /// can overflow further sessions, so this runs until none is left.
    fn evict_overflowed(&mut self) {
        while let Some(id) = self.overflowed.pop() {
            if let Some(outlet) = self.remove_session(id, LeaveReason::SlowConsumer) {
                outlet.evict(LeaveReason::SlowConsumer);
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
            if room.pending_patches.len() as u64 > room.version {
                return Err(format!("room {name:?} holds more patches than versions"));
            }
            for (member, _) in &room.members {
                let listed = self
                    .sessions
                    .get(member)
                    .is_some_and(|s| s.rooms.contains(name));
                if !listed {
                    return Err(format!("{member} is in room {name:?} but does not list it"));
                }
            }
        }
        for (id, entry) in &self.sessions {
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

/// Hands `frame` to every member but `skip`, noting those whose budget is spent.
fn deliver_all<O: Outlet>(
    members: &[(SessionId, O)],
    frame: &Bytes,
    skip: Option<SessionId>,
    overflowed: &mut Vec<SessionId>,
) {
    for (member, outlet) in members {
        if Some(*member) != skip && outlet.deliver(frame.clone()).is_err() {
            overflowed.push(*member);
        }
    }
}

/// An unguessable room id, for rooms the server names (private rooms are joined by it).
fn new_room_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests;
