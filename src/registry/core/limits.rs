//! The limits the registry enforces and how it batches (`RegistryLimits`), the checks made
//! with them, and `RequestError`, why a request was refused.

use super::*;

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
            room_type: options.room_type,
            type_options: options.type_options.unwrap_or(Value::Nil),
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
            room_type: None,
            type_options: Value::Nil,
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
    /// The room's logic is away running its tick (the request waits for it; a client sees
    /// this only where nothing can wait).
    #[error("room {0:?} is busy running its logic; try again")]
    RoomBusy(String),
    #[error("the cluster cannot be reached now ({0}); nothing was done, and the request may be sent again")]
    Unavailable(String),
    #[error("the cluster did not answer ({0}); the request may or may not have been carried out")]
    OutcomeUnknown(String),
    #[error("this server runs no room type {0:?}")]
    UnknownRoomType(String),
    #[error("{}", .0.message)]
    RoomRefused(crate::game::Refusal),
    #[error("in room {0:?}, only the room's logic may do that")]
    LogicOnly(String),
    #[error("your token lets you read room {0:?}, not change it")]
    ReadOnly(String),
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
            Self::Forbidden(_) | Self::ReadOnly(_) => ErrorCode::Forbidden,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            Self::Overloaded | Self::RoomBusy(_) => ErrorCode::Overloaded,
            Self::UnknownRoomType(_) => ErrorCode::UnknownRoomType,
            Self::RoomRefused(_) => ErrorCode::RoomRefused,
            Self::LogicOnly(_) => ErrorCode::LogicOnly,
        }
    }

    /// The detail a client acts on: the game's own code, for a refusal by a room's logic;
    /// `read_only` for a reader's write.
    pub fn reason(&self) -> Option<String> {
        match self {
            Self::RoomRefused(refusal) => Some(refusal.code.clone()),
            Self::ReadOnly(_) => Some("read_only".to_owned()),
            _ => None,
        }
    }
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
