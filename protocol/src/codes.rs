//! The closed vocabularies of the protocol: error codes, the reasons a member leaves a room, and
//! the WebSocket close codes the server uses.

use serde::{Deserialize, Serialize};

/// The `code` of an `error` frame. Serialized as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A text WebSocket message: the protocol is binary only.
    TextFrame,
    /// The bytes are not one complete MessagePack value (garbage, truncated, trailing bytes).
    Malformed,
    /// The frame is MessagePack but not a map with a string `type`.
    NotAMap,
    /// Arrays and maps nest deeper than `limits.max_depth`.
    TooDeep,
    /// The `type` tag names no client frame.
    UnknownType,
    /// A field is missing or has the wrong MessagePack type.
    InvalidField,
    /// The room name is empty or longer than `limits.max_room_name_bytes`.
    InvalidRoom,
    /// The event name is empty or longer than `limits.max_event_name_bytes`.
    InvalidEvent,
    /// The request names a room this session is not a member of.
    NotInRoom,
    /// A `join` for a room this session is already in.
    AlreadyJoined,
    /// Joining would exceed `limits.max_rooms_per_session`.
    TooManyRooms,
    /// The room already has `limits.max_members_per_room` members.
    RoomFull,
    /// A `send` to a session that does not exist or shares no room with the sender.
    UnknownSession,
    /// The server is too busy to take the request now; it was not carried out.
    Overloaded,
    /// A `create` named a room that already exists.
    RoomExists,
    /// A `join` with `create: false` named a room that does not exist.
    RoomNotFound,
    /// The room was locked by its owner.
    RoomLocked,
    /// The room has a password and the `join` did not give it.
    WrongPassword,
    /// Only the room's owner may do this.
    NotOwner,
    /// `update_state` gave `if_version` and the state has moved on; nothing changed.
    VersionConflict,
    /// The state would exceed `limits.max_state_bytes`; nothing changed.
    StateTooLarge,
    /// An `update_state` path is empty, too long, or runs through a value that is not a map;
    /// nothing changed.
    InvalidPath,
    /// Room options out of bounds: `max_members` 0 or over `limits.max_members_per_room`,
    /// metadata over `limits.max_metadata_bytes`, or a password over 128 bytes.
    InvalidOptions,
    /// The server holds `limits.max_rooms` rooms already.
    RoomLimit,
    /// `resume` failed: unknown or expired session, wrong token, or not the first request.
    ResumeFailed,
    /// The session sent faster than its rate limits allow; the frame was dropped.
    RateLimited,
    /// The authenticated user may not enter this room (its token's room patterns).
    Forbidden,
    /// The node cannot reach the cluster's Redis now; the request was not carried out and may
    /// be sent again.
    Unavailable,
    /// The request reached the cluster's Redis but its answer did not come back: it may or
    /// may not have been carried out. Check (a state's version, a room's members) before
    /// sending it again.
    OutcomeUnknown,
    /// `create` or `join_or_create` named a `room_type` this server does not run.
    UnknownRoomType,
    /// The room's logic (a game's rules) refused the request; the frame's `reason` is the
    /// game's own code.
    RoomRefused,
    /// The request is one the room's logic does not allow a client (a state write, an owner's
    /// action, in a room with logic).
    LogicOnly,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextFrame => "text_frame",
            Self::Malformed => "malformed",
            Self::NotAMap => "not_a_map",
            Self::TooDeep => "too_deep",
            Self::UnknownType => "unknown_type",
            Self::InvalidField => "invalid_field",
            Self::InvalidRoom => "invalid_room",
            Self::InvalidEvent => "invalid_event",
            Self::NotInRoom => "not_in_room",
            Self::AlreadyJoined => "already_joined",
            Self::TooManyRooms => "too_many_rooms",
            Self::RoomFull => "room_full",
            Self::UnknownSession => "unknown_session",
            Self::Overloaded => "overloaded",
            Self::RoomExists => "room_exists",
            Self::RoomNotFound => "room_not_found",
            Self::RoomLocked => "room_locked",
            Self::WrongPassword => "wrong_password",
            Self::NotOwner => "not_owner",
            Self::VersionConflict => "version_conflict",
            Self::StateTooLarge => "state_too_large",
            Self::InvalidPath => "invalid_path",
            Self::InvalidOptions => "invalid_options",
            Self::RoomLimit => "room_limit",
            Self::ResumeFailed => "resume_failed",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::UnknownRoomType => "unknown_room_type",
            Self::RoomRefused => "room_refused",
            Self::LogicOnly => "logic_only",
        }
    }
}

/// Why a member left a room, as carried by `presence` (status `left`) and `left`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The member sent `leave`.
    Leave,
    /// The member's connection ended with a close frame.
    Closed,
    /// The member's connection ended without a close frame (reset, EOF, I/O error).
    Dropped,
    /// The member sent nothing for `client_timeout`.
    Timeout,
    /// The member stopped reading and overran its outbound budget.
    SlowConsumer,
    /// The member broke the protocol fatally (oversized frame, bad WebSocket framing).
    ProtocolError,
    /// The server removed the member.
    Kicked,
    /// The member kept sending over its rate limits and was closed.
    RateLimited,
    /// The cluster node the member was connected to stopped answering; the other nodes
    /// removed its members.
    NodeLost,
    /// The room's logic ended the room (or failed, and the room ended with it).
    Ended,
}

impl LeaveReason {
    /// The reason's snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leave => "leave",
            Self::Closed => "closed",
            Self::Dropped => "dropped",
            Self::Timeout => "timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::ProtocolError => "protocol_error",
            Self::Kicked => "kicked",
            Self::RateLimited => "rate_limited",
            Self::NodeLost => "node_lost",
            Self::Ended => "ended",
        }
    }
}

/// WebSocket close codes the server sends (RFC 6455 section 7.4 plus Parlor's 4xxx range).
pub mod close {
    /// The client closed; the server echoes its close.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; the session may be resumed.
    pub const GOING_AWAY: u16 = 1001;
    /// The WebSocket framing itself was invalid (reserved bits set, an unknown opcode, an
    /// unmasked client frame, a fragmented or over-long control frame, a close code a client
    /// may not send, an unfinished fragmented message interleaved with a new one).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message or a close reason was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The session overran its outbound budget (slow consumer) or kept sending over its rate
    /// limits.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message (or a fragmented message once reassembled) exceeded `limits.max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected server-side failure.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The client sent nothing (not even a pong) for `client_timeout`.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// The server removed the session.
    pub const KICKED: u16 = 4001;
    /// The session was resumed on another connection; this one is no longer it.
    pub const REPLACED: u16 = 4002;
}
