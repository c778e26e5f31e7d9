//! Parlor's wire protocol, version 1: the frames a client and the server exchange, their
//! MessagePack encoding, and the typed errors a bad frame produces.
//!
//! Every frame is one binary WebSocket message holding one MessagePack map with a `type` tag and
//! named fields (see `PROTOCOL.md` beside this crate). This crate knows nothing of actix or of
//! sockets: the server's session edge and `parlor-client` both build on it.

mod codec;
mod codes;
mod frames;
pub mod map_only;
mod session_id;
mod state;

pub use codec::{
    decode_client, decode_server, decode_value, encode_client, encode_map, encode_server,
    encode_value, encoded_len, DecodeError,
};
pub use codes::{close, ErrorCode, LeaveReason};
pub use frames::{
    ClientFrame, DirectFrame, ErrorFrame, EventFrame, JoinedFrame, Limits, LobbyFrame, Metadata,
    PresenceFrame, PresenceStatus, ResumedFrame, ResumedRoom, RoomFilter, RoomInfo, RoomOptions,
    RoomPosition, RoomUpdateFrame, ServerFrame, StatePatch, StatePatchFrame, ViewFrame,
    WelcomeFrame,
};
pub use rmpv::Value;
pub use session_id::SessionId;
pub use state::{Document, StateError, StateLimits, StateOp, MAX_PATH_KEYS};

/// The protocol version this crate speaks; `welcome` carries it.
pub const PROTOCOL_VERSION: u32 = 1;

/// The client-chosen request reference echoed back in `ok` and `error`.
pub type Ref = u64;
