//! Rooms with logic: game rules written in Rust that the server runs for a room, as its
//! referee. A game implements `RoomLogic` and registers it under a type name (`RoomTypes`);
//! a client that creates a room of that type gets a room whose every message goes to the
//! logic, which accepts it, refuses it with an error of the game's own, answers it with data,
//! or keeps it as an input for the next tick. The logic never touches a socket: it speaks
//! through a `Ctx` that collects what it wants done (`Effect`s: broadcast, send to one member,
//! change the room's state, kick, lock, end...), and the registry carries those out with the
//! room's ordinary frames, offsets and history.
//!
//! - `ctx`: `Ctx`, what a hook may ask for, and `Effect`, what that becomes.
//! - `job`: `LogicJob`/`LogicDone`, a room's ticks run away from the registry (on the logic
//!   pool), and `LogicSlot`, the logic as its room holds it, home or away.
//! - `logic_room`: `LogicRoom`, sans-IO: one room's logic with its clock (a fixed-rate tick,
//!   the inputs since the last tick, named timers), every call to it guarded so that a panic
//!   ends that room alone.

mod ctx;
mod job;
mod logic_room;
pub mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use ctx::{Ctx, Effect};
pub use job::{LogicDone, LogicJob, LogicSlot, LogicSource, Notice, StoredLogic};
pub use logic_room::{LogicRoom, TickStats, MAX_INPUTS_PER_TICK};
pub use parlor_protocol::{LeaveReason, SessionId, Value};

/// A member as the logic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Player {
    pub session: SessionId,
    /// The authenticated user (the JWT's `sub`), if the server checks tokens.
    pub user: Option<String>,
    /// Its token lets it read this room, not change it (the read-only claim): the logic
    /// decides what that means (a document drops its writes).
    pub read_only: bool,
}

/// The game's own refusal: a code its clients know (`"not_your_turn"`) and words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// How the logic took a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Accepted; the request is answered `ok`.
    Ok,
    /// Accepted, and answered with this data (request/response).
    Data(Value),
    /// Kept for the next tick, in arrival order (`RoomLogic::tick` gets it); answered `ok`.
    Input,
}

/// A message kept for the next tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub from: SessionId,
    pub event: String,
    pub data: Value,
}

/// A room's rules. Every hook but `message` has a default that does nothing (or admits).
/// Hooks run one at a time for a room, never at once; what they ask of the room goes through
/// `ctx` and is carried out after the hook returns, in the order asked.
pub trait RoomLogic: Send + 'static {
    /// A session asks to join: admit it (`Ok`) or refuse it with the game's reason.
    fn joining(&mut self, _ctx: &mut Ctx, _player: &Player) -> Result<(), Refusal> {
        Ok(())
    }

    /// A session is now a member (it has its `joined`).
    fn joined(&mut self, _ctx: &mut Ctx, _player: &Player) {}

    /// A member sent `event` with `data` (an `emit` to the room).
    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal>;

    /// The room's tick (see `Ctx::set_tick_rate`), with the inputs kept since the last one.
    fn tick(&mut self, _ctx: &mut Ctx, _inputs: Vec<Input>) {}

    /// A timer set with `Ctx::set_timer` is due.
    fn timer(&mut self, _ctx: &mut Ctx, _name: &str) {}

    /// A member's connection dropped; it keeps its seat for the server's grace.
    fn away(&mut self, _ctx: &mut Ctx, _who: SessionId) {}

    /// A member that was away is back.
    fn back(&mut self, _ctx: &mut Ctx, _who: SessionId) {}

    /// A member left, for `reason`.
    fn left(&mut self, _ctx: &mut Ctx, _who: SessionId, _reason: LeaveReason) {}

    /// The room is going away (its last member left, or it ended).
    fn dispose(&mut self, _ctx: &mut Ctx) {}

    /// What the logic holds, so that a cluster can carry the room to a new home when its home
    /// is lost (`restore` takes it back there). `None`, the default: the room cannot be
    /// carried, and the node that takes it over ends it (`ended`). Called whenever a cluster
    /// home writes the room's checkpoint (after every call that ran the logic), so keep it
    /// quick and small (at most `MAX_SNAPSHOT_BYTES` encoded); never called on a single node.
    fn snapshot(&self) -> Option<Value> {
        None
    }

    /// The room comes back on a new home: the logic its factory just made (from the room's
    /// `type_options`; what the factory asked of the room is not carried out again, the
    /// room's state being restored as it was) takes back what `snapshot` gave, and sets its
    /// tick rate and timers again. `ctx.members()` are the room's members as they were. An
    /// error ends the room.
    fn restore(&mut self, _ctx: &mut Ctx, _snapshot: Value) -> Result<(), Refusal> {
        Err(Refusal::new(
            "not_restorable",
            "this room type does not restore from a snapshot",
        ))
    }

    /// Whether the room's own broadcasts (its events from the nil id) since a snapshot bring
    /// a restored logic back to now (`replay`). Then a cluster home takes and writes the
    /// snapshot only now and then (once `rooms.history_frames / 2` frames, at most 256, came
    /// after the last one) and the room's log holds the rest: a big document is not written
    /// whole on every edit. `false`, the default: a snapshot with every commit.
    fn replays_broadcasts(&self) -> bool {
        false
    }

    /// After `restore`, one of the room's broadcasts since that snapshot, in order, to take in
    /// (what it asks of the room meanwhile is not carried out). Make it idempotent: a
    /// broadcast the snapshot already holds may come again (the room's offsets in the store
    /// can run a little ahead of the home's when the room was just made).
    fn replay(&mut self, _event: &str, _data: &Value) {}
}

/// The largest snapshot (`RoomLogic::snapshot`, encoded) a cluster home stores; a larger one
/// is not stored, and the room ends if its home is lost.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 20;

/// Makes a room's logic from the options its creator gave (`create` or `join_or_create`'s
/// `type_options`), or refuses to.
pub type RoomFactory =
    dyn Fn(&mut Ctx, &Value) -> Result<Box<dyn RoomLogic>, Refusal> + Send + Sync + 'static;

/// The room types a server runs, by name.
#[derive(Clone, Default)]
pub struct RoomTypes {
    types: BTreeMap<String, Arc<RoomFactory>>,
}

impl RoomTypes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `name` (a later registration under the same name replaces it).
    pub fn add(
        mut self,
        name: impl Into<String>,
        factory: impl Fn(&mut Ctx, &Value) -> Result<Box<dyn RoomLogic>, Refusal>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.types.insert(name.into(), Arc::new(factory));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<RoomFactory>> {
        self.types.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

impl std::fmt::Debug for RoomTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}
