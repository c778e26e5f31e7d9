//! One room: its members in join order with the outlets that reach them (none while a member
//! is away), its owner and rules (seats, lock, privacy, password, metadata), its shared state
//! with the patches not yet broadcast, and its history of recent frames for replay. Also how a
//! room looks to the lobby and whether a filter matches it.

use std::collections::VecDeque;

use bytes::Bytes;
use parlor_protocol::{Document, Metadata, RoomFilter, RoomInfo, SessionId, StatePatch, Value};

use crate::game::LogicSlot;

/// One seat: the session in it and, unless it is away, the outlet that reaches it.
pub(crate) struct Member<O> {
    pub(crate) id: SessionId,
    pub(crate) outlet: Option<O>,
}

pub(crate) struct Room<O> {
    /// Members in the order they joined (so the oldest is first), away ones included.
    pub(crate) members: Vec<Member<O>>,
    /// The member who may lock, kick and change metadata: the oldest that is no reader (a
    /// reader never owns a room); `None` only while no such member is in it.
    pub(crate) owner: Option<SessionId>,
    pub(crate) max_members: usize,
    /// Locked by the owner; the room is also closed, but not `locked_by_hand`, while full.
    pub(crate) locked_by_hand: bool,
    pub(crate) private: bool,
    pub(crate) password: Option<String>,
    pub(crate) metadata: Metadata,
    pub(crate) dispose_when_empty: bool,
    /// Position in creation order, for "oldest first" among equals.
    pub(crate) created: u64,
    pub(crate) state: Document,
    /// Bumped once per applied `update_state`.
    pub(crate) version: u64,
    /// Applied patches not yet broadcast (only when patches are batched), and their size.
    pub(crate) pending_patches: Vec<StatePatch>,
    pub(crate) pending_bytes: usize,
    /// The room's recent frames, for sessions that resume.
    pub(crate) history: History,
    /// The room's rules in code, for a room with a type (`crate::game`).
    pub(crate) logic: Option<LogicSlot>,
    /// Each member's own view, as its logic last set it.
    pub(crate) views: std::collections::HashMap<SessionId, Value>,
    /// Members whose tokens let them read the room, not change it (`Profile::may_write`).
    pub(crate) readers: std::collections::HashSet<SessionId>,
    /// Bytes of frames appended to the room so far (how far a replaying logic's snapshot is
    /// behind).
    pub(crate) appended: u64,
}

/// A room's recent broadcast frames, as encoded once for the members, with their offsets.
/// Offsets start at 0 and never repeat within an epoch; the epoch is new with every room, so a
/// room made again under the same name is told apart from the one before.
pub(crate) struct History {
    pub(crate) epoch: String,
    /// Offset of the next frame.
    pub(crate) next_offset: u64,
    entries: VecDeque<HistoryEntry>,
    bytes: usize,
}

pub(crate) struct HistoryEntry {
    pub(crate) offset: u64,
    pub(crate) frame: Bytes,
    /// The member the frame was not sent to (an `emit` without `echo`, a member's own `away`).
    pub(crate) skip: Option<SessionId>,
}

/// How much history a room keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HistoryLimits {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

impl History {
    fn new() -> Self {
        Self {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            next_offset: 0,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    pub(crate) fn take_offset(&mut self) -> u64 {
        let offset = self.next_offset;
        self.next_offset += 1;
        offset
    }

    /// Records a frame, forgetting the oldest ones beyond `limits`.
    pub(crate) fn record(&mut self, entry: HistoryEntry, limits: HistoryLimits) {
        if limits.frames == 0 {
            return;
        }
        self.bytes += entry.frame.len();
        self.entries.push_back(entry);
        while self.entries.len() > limits.frames || self.bytes > limits.bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.frame.len(),
                None => break,
            }
        }
    }

    /// The frames from `offset` on, when the history still holds every one of them; `None`
    /// when some are forgotten or `offset` lies in the future.
    pub(crate) fn since(&self, offset: u64) -> Option<impl Iterator<Item = &HistoryEntry>> {
        if offset > self.next_offset {
            return None;
        }
        let oldest = self.entries.front().map_or(self.next_offset, |e| e.offset);
        if offset < oldest {
            return None;
        }
        let skip = (offset - oldest) as usize;
        Some(self.entries.iter().skip(skip))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The rules a room is created with, already checked against the limits.
pub(crate) struct RoomRules {
    pub(crate) max_members: usize,
    pub(crate) private: bool,
    pub(crate) password: Option<String>,
    pub(crate) metadata: Metadata,
    pub(crate) dispose_when_empty: bool,
    /// A room with logic: its type's name, and what its logic is made from.
    pub(crate) room_type: Option<String>,
    pub(crate) type_options: Value,
}

impl<O> Room<O> {
    pub(crate) fn new(rules: RoomRules, created: u64) -> Self {
        Self {
            members: Vec::new(),
            owner: None,
            max_members: rules.max_members,
            locked_by_hand: false,
            private: rules.private,
            password: rules.password,
            metadata: rules.metadata,
            dispose_when_empty: rules.dispose_when_empty,
            created,
            state: Document::new(),
            version: 0,
            pending_patches: Vec::new(),
            pending_bytes: 0,
            history: History::new(),
            logic: None,
            views: std::collections::HashMap::new(),
            readers: std::collections::HashSet::new(),
            appended: 0,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.members.len() >= self.max_members
    }

    /// Closed to new members: locked by hand, or full.
    pub(crate) fn is_locked(&self) -> bool {
        self.locked_by_hand || self.is_full()
    }

    /// Removes `id`; when it was the owner, the oldest remaining member that is no reader
    /// becomes owner (none, while only readers are left).
    pub(crate) fn remove(&mut self, id: SessionId) -> bool {
        self.views.remove(&id);
        self.readers.remove(&id);
        let Some(index) = self.members.iter().position(|m| m.id == id) else {
            return false;
        };
        self.members.remove(index);
        if self.owner == Some(id) {
            self.owner = self.first_writer();
        }
        true
    }

    /// The oldest member that is no reader: who owns the room.
    pub(crate) fn first_writer(&self) -> Option<SessionId> {
        self.members
            .iter()
            .map(|m| m.id)
            .find(|id| !self.readers.contains(id))
    }

    pub(crate) fn is_member(&self, id: SessionId) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    pub(crate) fn member_mut(&mut self, id: SessionId) -> Option<&mut Member<O>> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub(crate) fn member_ids(&self) -> Vec<SessionId> {
        self.members.iter().map(|m| m.id).collect()
    }

    pub(crate) fn away_ids(&self) -> Vec<SessionId> {
        self.members
            .iter()
            .filter(|m| m.outlet.is_none())
            .map(|m| m.id)
            .collect()
    }

    /// The room's type, for a room with logic.
    pub(crate) fn room_type(&self) -> Option<&str> {
        self.logic.as_ref().map(|logic| logic.kind())
    }

    /// What the lobby shows of this room.
    pub(crate) fn info(&self, name: &str) -> RoomInfo {
        RoomInfo {
            room: name.to_owned(),
            members: saturate(self.members.len()),
            max_members: saturate(self.max_members),
            locked: self.is_locked(),
            locked_by_owner: self.locked_by_hand,
            password: self.password.is_some(),
            owner: self.owner,
            metadata: self.metadata.clone(),
            room_type: self.room_type().map(str::to_owned),
        }
    }

    pub(crate) fn listing(&self, name: &str) -> Listing {
        Listing {
            info: self.info(name),
            private: self.private,
        }
    }

    /// Whether a listing with `filter` shows this room. Private rooms are never shown.
    pub(crate) fn matches(&self, filter: &RoomFilter) -> bool {
        listed(
            self.private,
            self.is_locked(),
            &self.metadata,
            self.room_type(),
            filter,
        )
    }

    /// Whether `join_or_create` may put a newcomer here: listed, matching, open, with no
    /// password.
    pub(crate) fn takes_matchmaking(&self, filter: &RoomFilter) -> bool {
        self.matches(filter) && !self.is_locked() && self.password.is_none()
    }
}

/// A room as listings and the lobby see it: what they show, and whether it is private (never
/// shown). The single-node registry makes it from a `Room`; a cluster node reads it from Redis.
/// The backend API lists it whole: it serializes as one map, the room info's fields and then
/// `private`.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    pub info: RoomInfo,
    pub private: bool,
}

impl serde::Serialize for Listing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Listed<'a> {
            room: &'a str,
            members: u32,
            max_members: u32,
            locked: bool,
            locked_by_owner: bool,
            password: bool,
            owner: Option<SessionId>,
            metadata: &'a Metadata,
            #[serde(skip_serializing_if = "Option::is_none")]
            room_type: &'a Option<String>,
            private: bool,
        }
        // Taken apart whole, so that a field added to RoomInfo cannot be left out here.
        let RoomInfo {
            room,
            members,
            max_members,
            locked,
            locked_by_owner,
            password,
            owner,
            metadata,
            room_type,
        } = &self.info;
        Listed {
            room,
            members: *members,
            max_members: *max_members,
            locked: *locked,
            locked_by_owner: *locked_by_owner,
            password: *password,
            owner: *owner,
            metadata,
            room_type,
            private: self.private,
        }
        .serialize(serializer)
    }
}

impl Listing {
    /// Whether a listing with `filter` shows this room.
    pub(crate) fn matches(&self, filter: &RoomFilter) -> bool {
        listed(
            self.private,
            self.info.locked,
            &self.info.metadata,
            self.info.room_type.as_deref(),
            filter,
        )
    }

    /// Whether `join_or_create` may put a newcomer here, as `Room::takes_matchmaking` says
    /// for a room at hand: listed, matching, open, with no password.
    pub fn takes_matchmaking(&self, filter: &RoomFilter) -> bool {
        self.matches(filter) && !self.info.locked && !self.info.password
    }
}

/// Whether a listing with `filter` shows a room that is `private`, `locked`, with `metadata`.
/// Private rooms are never shown.
pub(crate) fn listed(
    private: bool,
    locked: bool,
    metadata: &Metadata,
    room_type: Option<&str>,
    filter: &RoomFilter,
) -> bool {
    if private || (filter.free_seats && locked) {
        return false;
    }
    if filter.room_type.is_some() && filter.room_type.as_deref() != room_type {
        return false;
    }
    if let Some(mode) = &filter.mode {
        if metadata.get("mode") != Some(&Value::from(mode.as_str())) {
            return false;
        }
    }
    filter
        .metadata
        .iter()
        .all(|(key, value)| metadata.get(key) == Some(value))
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
