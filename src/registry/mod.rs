//! The room registry: who is connected, which rooms exist, who is in each and who owns them,
//! their shared state, and who watches the lobby. `Registry` is a plain struct with no I/O (its
//! unit tests drive it directly); the engines (`engine::single`, `cluster`) run it in actors.
//! Nothing here imports an engine, a session or the HTTP side.

mod core;
mod lobby;
mod room;
#[cfg(any(test, feature = "script"))]
pub mod script;

pub use self::core::{
    best_candidate, can_join, detail_of_checkpoint, holds_seats, may_send, Append, Close,
    HostEffects, MemberCheckpoint, MemberDetail, Outlet, Overflow, Profile, Registry,
    RegistryLimits, RequestError, RoomCheckpoint, RoomDetail, RoomPatterns, BACKEND,
    DEFAULT_LISTED_ROOMS, MAX_PASSWORD_BYTES,
};
pub(crate) use self::core::{graces_over, match_rules, new_room_id};
pub(crate) use self::lobby::{Changes, Lobby};
pub use self::room::Listing;
