//! The frame types: what a client may send (`ClientFrame`) and what the server sends
//! (`ServerFrame`). Each is a MessagePack map whose `type` field selects the variant.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, LeaveReason, Ref, SessionId, Value};

/// A frame sent by a client. Every request may carry a `ref`; the server then answers it with
/// exactly one `ok` or `error` bearing the same `ref`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Become a member of `room`, creating it if it does not exist.
    Join {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        room: String,
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
}

impl ClientFrame {
    /// The `type` tags a client may send, in declaration order.
    pub const TYPES: &'static [&'static str] = &["join", "leave", "emit", "send"];

    /// The request's `ref`, if the client gave one.
    pub fn reference(&self) -> Option<Ref> {
        match self {
            Self::Join { reference, .. }
            | Self::Leave { reference, .. }
            | Self::Emit { reference, .. }
            | Self::Send { reference, .. } => *reference,
        }
    }
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame on every connection.
    Welcome(WelcomeFrame),
    /// This session is now a member of `room`; `members` lists every member, itself included.
    Joined {
        room: String,
        members: Vec<SessionId>,
    },
    /// This session is no longer a member of `room`.
    Left { room: String, reason: LeaveReason },
    /// Another session joined or left a room this session is in.
    Presence(PresenceFrame),
    /// An event emitted to a room.
    Event(EventFrame),
    /// An event sent directly to this session.
    Direct(DirectFrame),
    /// The request with this `ref` succeeded.
    Ok {
        #[serde(rename = "ref")]
        reference: Ref,
    },
    /// A request failed, or a frame could not be understood.
    Error(ErrorFrame),
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Joined,
    Left,
}

/// `presence`: `session` joined or left `room`. `reason` is present exactly when `status` is
/// `left`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceFrame {
    pub room: String,
    pub session: SessionId,
    pub status: PresenceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeaveReason>,
}

/// `event`: `from` emitted `event` with `data` to `room`. `offset` counts the room's events
/// from 0 in the order the server accepted them.
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

/// `error`: what went wrong, and which request it answers (`ref` is nil when the failing frame
/// carried none, or could not be read far enough to find it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    #[serde(rename = "ref")]
    pub reference: Option<Ref>,
    pub code: ErrorCode,
    pub message: String,
}

fn nil() -> Value {
    Value::Nil
}
