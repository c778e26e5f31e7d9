//! The frame types: what a client may send (`ClientFrame`) and what the server sends
//! (`ServerFrame`). Each is a MessagePack map whose `type` field selects the variant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::map_only;
use crate::{Document, ErrorCode, LeaveReason, Ref, SessionId, StateOp, Value};

/// A room's metadata: a map of named values (name, mode, map, anything) shown in the lobby.
pub type Metadata = BTreeMap<String, Value>;

/// A frame sent by a client. Every request may carry a `ref`; the server then answers it with
/// exactly one `ok` or `error` bearing the same `ref`. Every struct-typed field goes through
/// `map_only`, so that no positional array stands in for a map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Become a member of `room`, creating it with default options if it does not exist.
    Join {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// False: join only a room that exists (`room_not_found` otherwise).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        create: bool,
    },
    /// Create a room with `options` and join it as its owner. Without `room`, the server names
    /// it (an unguessable id).
    Create {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, deserialize_with = "map_only::deserialize")]
        options: RoomOptions,
    },
    /// Join the fullest open room matching `filter`, or create one with `options`.
    JoinOrCreate {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        #[serde(default, deserialize_with = "map_only::deserialize")]
        filter: RoomFilter,
        #[serde(default, deserialize_with = "map_only::deserialize")]
        options: RoomOptions,
    },
    /// Stop being a member of `room`.
    Leave {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
    },
    /// Send an event to every member of `room`; the sender gets it too only with `echo`.
    Emit {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
        event: String,
        #[serde(default = "nil")]
        data: Value,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        echo: bool,
    },
    /// Send an event to one session that shares a room with the sender.
    Send {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        to: SessionId,
        event: String,
        #[serde(default = "nil")]
        data: Value,
    },
    /// Owner only: refuse new members until `unlock`.
    Lock {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
    },
    /// Owner only: undo `lock` (a full room stays closed until a seat frees).
    Unlock {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
    },
    /// Owner only: remove `session` from `room`.
    Kick {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
        session: SessionId,
    },
    /// Owner only: replace the room's metadata.
    SetMetadata {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
        metadata: Metadata,
    },
    /// List the public rooms matching `filter`, at most `limit` of them; answered by
    /// `room_list`.
    ListRooms {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        #[serde(default, deserialize_with = "map_only::deserialize")]
        filter: RoomFilter,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Receive `lobby` updates about public rooms matching `filter`; answered by `room_list`
    /// with the rooms as they are now. Subscribing again replaces the filter.
    SubscribeLobby {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        #[serde(default, deserialize_with = "map_only::deserialize")]
        filter: RoomFilter,
    },
    /// Stop receiving `lobby` updates.
    UnsubscribeLobby {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
    },
    /// Apply `ops` to the room's state, all or nothing, optionally only if the state is still at
    /// version `if_version`.
    UpdateState {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
        #[serde(deserialize_with = "map_only::vec")]
        ops: Vec<StateOp>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
    },
    /// Take back session `session` after a dropped connection, proving it with the
    /// `resume_token` its `welcome` carried, and catch up on each room from `rooms`. Must be
    /// the connection's first request; answered by `resumed` (or an `error`).
    Resume {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        session: SessionId,
        token: String,
        /// Where the client is in each room: the epoch and offset of the next frame it expects.
        #[serde(default, deserialize_with = "map_only::vec")]
        rooms: Vec<RoomPosition>,
    },
}

/// A position in a room's history: the frame with `offset` of history `epoch`. As a client's
/// own record it is the next frame it expects, which is what `resume` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPosition {
    pub room: String,
    pub epoch: String,
    pub offset: u64,
}

impl RoomPosition {
    /// Where a member stands right after `joined`: before the room's next frame.
    pub fn from_joined(joined: &JoinedFrame) -> Self {
        Self {
            room: joined.room.clone(),
            epoch: joined.epoch.clone(),
            offset: joined.offset,
        }
    }

    /// Follows `frame`: `None` if it is not a frame of this room's history; `Some(true)` if
    /// the position moved past it (a `joined` of this room starts it afresh); `Some(false)` if
    /// the frame is one already passed, a duplicate to ignore.
    pub fn advance(&mut self, frame: &ServerFrame) -> Option<bool> {
        if let ServerFrame::Joined(joined) = frame {
            if joined.room != self.room {
                return None;
            }
            *self = Self::from_joined(joined);
            return Some(true);
        }
        let (room, offset) = frame.room_offset()?;
        if room != self.room {
            return None;
        }
        if offset < self.offset {
            return Some(false);
        }
        self.offset = offset + 1;
        Some(true)
    }
}

/// The `ref` field of any client frame, borrowed as `self` is (shared or mutable).
macro_rules! ref_slot {
    ($frame:expr) => {
        match $frame {
            Self::Join { reference, .. }
            | Self::Create { reference, .. }
            | Self::JoinOrCreate { reference, .. }
            | Self::Leave { reference, .. }
            | Self::Emit { reference, .. }
            | Self::Send { reference, .. }
            | Self::Lock { reference, .. }
            | Self::Unlock { reference, .. }
            | Self::Kick { reference, .. }
            | Self::SetMetadata { reference, .. }
            | Self::ListRooms { reference, .. }
            | Self::SubscribeLobby { reference, .. }
            | Self::UnsubscribeLobby { reference }
            | Self::UpdateState { reference, .. }
            | Self::Resume { reference, .. } => reference,
        }
    };
}

impl ClientFrame {
    /// The `type` tags a client may send, in declaration order.
    pub const TYPES: &'static [&'static str] = &[
        "join",
        "create",
        "join_or_create",
        "leave",
        "emit",
        "send",
        "lock",
        "unlock",
        "kick",
        "set_metadata",
        "list_rooms",
        "subscribe_lobby",
        "unsubscribe_lobby",
        "update_state",
        "resume",
    ];

    /// `lock` (when `locked`) or `unlock` for `room`, without a `ref`.
    pub fn set_lock(room: impl Into<String>, locked: bool) -> Self {
        let room = room.into();
        if locked {
            Self::Lock {
                reference: None,
                room,
            }
        } else {
            Self::Unlock {
                reference: None,
                room,
            }
        }
    }

    /// The request's `ref`, if the client gave one.
    pub fn reference(&self) -> Option<Ref> {
        *ref_slot!(self)
    }

    /// The request's `ref` slot, to set or clear it.
    pub fn reference_mut(&mut self) -> &mut Option<Ref> {
        ref_slot!(self)
    }
}

/// How a room is made by `create` and `join_or_create`. Every field may be left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomOptions {
    /// Seats; the room locks itself when they are all taken. Default and most:
    /// `limits.max_members_per_room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<u32>,
    /// Left out of listings, the lobby and `join_or_create`; joinable by id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// Joiners must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
    /// Remove the room when its last member leaves (the default); otherwise it stays, empty
    /// and listed.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub dispose_when_empty: bool,
    /// A room with logic: the name of a room type the server runs (a game's rules). Fixed for
    /// the room's life. `None`: a plain room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
    /// What the room type's logic is made from (its own format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_options: Option<Value>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            max_members: None,
            private: false,
            password: None,
            metadata: Metadata::new(),
            dispose_when_empty: true,
            room_type: None,
            type_options: None,
        }
    }
}

/// Which rooms a listing, a lobby subscription or `join_or_create` considers. Every condition
/// given must hold; an empty filter matches every public room.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomFilter {
    /// Shorthand for `metadata: {mode: <mode>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Each entry must equal the room's metadata entry of the same name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
    /// Only rooms that are not locked and have a free seat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_seats: bool,
    /// Only rooms of this type (`join_or_create` looks only at rooms of the type it would
    /// make, plain rooms included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
}

impl RoomFilter {
    /// The filter's encoding: equal filters have equal keys, so they can be grouped.
    pub fn canonical_key(&self) -> bytes::Bytes {
        crate::codec::encode(self)
    }
}

/// A public room as listings and the lobby show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub room: String,
    pub members: u32,
    pub max_members: u32,
    /// Closed to newcomers: locked by the owner, or full.
    pub locked: bool,
    /// Locked by the owner, full or not (a room that is only full is `locked` but not this).
    #[serde(default)]
    pub locked_by_owner: bool,
    /// Joining needs a password.
    pub password: bool,
    pub owner: Option<SessionId>,
    pub metadata: Metadata,
    /// The room's type, for a room with logic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame on every connection.
    Welcome(WelcomeFrame),
    /// This session is now a member of `room`: everything about the room, its whole state
    /// included. `ref` is the request that made it join.
    Joined(JoinedFrame),
    /// This session is no longer a member of `room`.
    Left { room: String, reason: LeaveReason },
    /// Another session joined or left a room this session is in.
    Presence(PresenceFrame),
    /// An event emitted to a room.
    Event(EventFrame),
    /// An event sent directly to this session.
    Direct(DirectFrame),
    /// In a room with logic: what this member alone may see of the room (its hand of cards),
    /// kept by the server and sent again after every `joined` and resume.
    View(ViewFrame),
    /// The room's owner, lock or metadata changed; sent to every member.
    RoomUpdate(RoomUpdateFrame),
    /// Changes to the room's state, in the order the server applied them.
    StatePatch(StatePatchFrame),
    /// The answer to `list_rooms` and `subscribe_lobby`.
    RoomList {
        #[serde(rename = "ref")]
        reference: Option<Ref>,
        rooms: Vec<RoomInfo>,
    },
    /// Public rooms added, changed or removed since the last `lobby` frame, to lobby
    /// subscribers, at most one frame per `lobby_interval_ms`. Each room appears at most once.
    Lobby(LobbyFrame),
    /// The request with this `ref` succeeded.
    Ok {
        #[serde(rename = "ref")]
        reference: Ref,
        /// A room's logic's answer to the request, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    /// A request failed, or a frame could not be understood.
    Error(ErrorFrame),
    /// The answer to `resume`: this connection is now `session`, back in `rooms`.
    Resumed(ResumedFrame),
}

impl ServerFrame {
    /// The room and offset of a frame that takes a place in a room's history (`event`,
    /// `presence`, `room_update`, `state_patch`); `None` for every other frame.
    pub fn room_offset(&self) -> Option<(&str, u64)> {
        match self {
            Self::Event(e) => Some((&e.room, e.offset)),
            Self::Presence(p) => Some((&p.room, p.offset)),
            Self::RoomUpdate(u) => Some((&u.room, u.offset)),
            Self::StatePatch(p) => Some((&p.room, p.offset)),
            _ => None,
        }
    }
}

/// `resumed`: the session taken back, and how each of its rooms is caught up. For a room with
/// `recovered` true the frames the client missed follow, in order, with their own offsets;
/// otherwise a `joined` with the room as it is now follows. Live frames come after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResumedFrame {
    #[serde(rename = "ref")]
    pub reference: Option<Ref>,
    pub session: SessionId,
    pub rooms: Vec<ResumedRoom>,
}

/// One room of a `resumed` session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumedRoom {
    pub room: String,
    /// The room's history epoch now.
    pub epoch: String,
    /// The offset the room's next live frame will carry, once the catch-up is over.
    pub offset: u64,
    /// The missed frames are replayed (true), or the history no longer covers them and a
    /// `joined` snapshot is sent instead (false).
    pub recovered: bool,
}

/// `joined`: the room as the new member finds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinedFrame {
    #[serde(rename = "ref")]
    pub reference: Option<Ref>,
    pub room: String,
    /// Every member in join order (oldest first), this session included.
    pub members: Vec<SessionId>,
    pub owner: Option<SessionId>,
    pub max_members: u32,
    /// Closed to newcomers: locked by the owner, or full.
    pub locked: bool,
    /// Locked by the owner (`lock`), full or not; `unlock` undoes only this.
    #[serde(default)]
    pub locked_by_owner: bool,
    pub private: bool,
    pub metadata: Metadata,
    pub state: Document,
    pub version: u64,
    /// The room's history epoch: it changes when the history is lost, so offsets from another
    /// epoch mean nothing.
    #[serde(default)]
    pub epoch: String,
    /// The offset the room's next frame (`event`, `presence`, `room_update`, `state_patch`)
    /// will carry.
    #[serde(default)]
    pub offset: u64,
    /// The user id of each member that has one (authenticated sessions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<SessionId, String>,
    /// Members whose connection dropped and whose seat is held for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub away: Vec<SessionId>,
    /// A room with logic's type (absent for a plain room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
}

/// `room_update`: the room's settings as they are now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomUpdateFrame {
    pub room: String,
    pub owner: Option<SessionId>,
    /// Closed to newcomers: locked by the owner, or full.
    pub locked: bool,
    /// Locked by the owner, full or not.
    #[serde(default)]
    pub locked_by_owner: bool,
    pub metadata: Metadata,
    pub offset: u64,
}

/// `state_patch`: one or more applied `update_state` requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatePatchFrame {
    pub room: String,
    pub patches: Vec<StatePatch>,
    pub offset: u64,
}

/// One applied `update_state`: the state's `version` after it, who sent it, and its ops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatePatch {
    pub version: u64,
    pub author: SessionId,
    pub ops: Vec<StateOp>,
}

/// `lobby`: what changed among the public rooms a subscriber's filter matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LobbyFrame {
    /// Rooms created since the last update.
    pub added: Vec<RoomInfo>,
    /// Rooms that changed; one the subscriber does not know yet is to be added.
    pub changed: Vec<RoomInfo>,
    /// Rooms gone, or no longer matching the filter (locked, full, private...); ids the
    /// subscriber does not know are to be ignored.
    pub removed: Vec<String>,
}

/// `welcome`: who the session is and the rules in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WelcomeFrame {
    pub session: SessionId,
    pub protocol: u32,
    /// The server pings this often.
    pub heartbeat_ms: u64,
    /// A session that sends nothing (no frame, no pong) for this long is closed.
    pub timeout_ms: u64,
    pub limits: Limits,
    /// The secret that takes this session back on a new connection (`resume`).
    pub resume_token: String,
    /// How long a dropped session's seats are held for it, in milliseconds.
    pub reconnect_grace_ms: u64,
    /// The authenticated user (the token's `sub`); absent for anonymous sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The limits in force, as announced in `welcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_frame_bytes: u64,
    pub max_rooms_per_session: u64,
    pub max_members_per_room: u64,
    pub max_room_name_bytes: u64,
    pub max_event_name_bytes: u64,
    pub max_depth: u64,
    pub outbound_budget_bytes: u64,
    pub max_state_bytes: u64,
    /// Most MessagePack values a room's state may hold (0 from servers that do not say).
    #[serde(default)]
    pub max_state_values: u64,
    pub max_metadata_bytes: u64,
    /// Frames per second a session may send on average (0: no limit).
    #[serde(default)]
    pub frames_per_second: u64,
    /// Bytes per second a session may send on average (0: no limit).
    #[serde(default)]
    pub bytes_per_second: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Joined,
    Left,
    /// The member's connection dropped; its seat is held for `reconnect_grace_ms`.
    Away,
    /// An away member resumed its session.
    Back,
}

/// `presence`: `session` joined, left, went away from or came back to `room`. `reason` is
/// present exactly when `status` is `left`; `user` when the session is authenticated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceFrame {
    pub room: String,
    pub session: SessionId,
    pub status: PresenceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeaveReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub offset: u64,
}

/// `event`: `from` emitted `event` with `data` to `room` (`from` is the nil id for events the
/// backend API published). `offset` is the frame's place in the room's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub room: String,
    pub from: SessionId,
    pub event: String,
    pub data: Value,
    pub offset: u64,
}

/// `direct`: `from` sent `event` with `data` to this session alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectFrame {
    pub from: SessionId,
    pub event: String,
    pub data: Value,
}

/// `view`: this member's own view of a room with logic; it replaces the one before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewFrame {
    pub room: String,
    pub data: Value,
}

/// `error`: what went wrong, and which request it answers (`ref` is nil when the failing frame
/// carried none, or could not be read far enough to find it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(rename = "ref")]
    pub reference: Option<Ref>,
    pub code: ErrorCode,
    pub message: String,
    /// With `room_refused`: the game's own code (`"not_your_turn"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn nil() -> Value {
    Value::Nil
}
