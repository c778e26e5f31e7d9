//! A room's logic away from the registry: `LogicJob` carries one room's `LogicRoom` to
//! wherever its due ticks and timers run (the logic pool's threads on a single node, or the
//! registry's own thread), and `LogicDone` brings it back with what it asked for. While a room's
//! logic is away, what it must hear (`Notice`s: away, back, left) waits in its slot, in order,
//! and requests that need its answer wait with their sessions (see `registry/core/logic.rs`).
//! A room has at most one job out at a time, so its hooks still run one at a time.

use std::time::{Duration, Instant};

use super::{Effect, LeaveReason, LogicRoom, SessionId, Value};

/// A room's logic, its ticks and timers due at `now`.
pub struct LogicJob {
    pub room: String,
    /// Which room of that name (its creation number): a room ended and made again while its
    /// old logic was away does not get the old logic back.
    pub created: u64,
    pub logic: Box<LogicRoom>,
    pub now: Instant,
}

/// A `LogicJob` run: the logic, what it asked for, and how its tick went.
pub struct LogicDone {
    pub room: String,
    pub created: u64,
    pub logic: Box<LogicRoom>,
    pub effects: Vec<Effect>,
    /// How long the run took (ticks and timers together).
    pub took: Duration,
    /// Whether a tick ran (and how late), not only timers.
    pub ticked: Option<Duration>,
}

impl LogicJob {
    /// Runs the room's due ticks and timers at the job's time, on whatever thread this is
    /// called on (a pool sets `now` to when the job really runs first).
    pub fn run(self) -> LogicDone {
        let Self {
            room,
            created,
            mut logic,
            now,
        } = self;
        let ticks = logic.stats().ticks;
        let started = Instant::now();
        let effects = logic.advance(now);
        let took = started.elapsed();
        let stats = logic.stats();
        LogicDone {
            room,
            created,
            logic,
            effects,
            took,
            ticked: (stats.ticks > ticks).then_some(stats.last_lateness),
        }
    }
}

/// A room's logic as a store keeps it between a node's runs: what `RoomLogic::snapshot` gave,
/// with the type and `type_options` to make the logic again (`RoomLogic::restore`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredLogic {
    pub room_type: String,
    pub type_options: Value,
    #[serde(with = "serde_bytes")]
    pub snapshot: Vec<u8>,
}

/// Where a single node's registry finds a room's stored logic when the room is made again.
/// Called on the registry's thread: keep it to one small read.
pub trait LogicSource: Send {
    fn load(&self, room: &str) -> Option<StoredLogic>;
}

/// A moment a room's logic hears once it is back from a job, in the order they came.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Away(SessionId),
    Back(SessionId),
    Left(SessionId, LeaveReason),
}

impl Notice {
    /// Tells `logic` of this moment, at `now`.
    pub fn tell(self, logic: &mut LogicRoom, now: Instant) -> Vec<Effect> {
        match self {
            Self::Away(who) => logic.away(who, now),
            Self::Back(who) => logic.back(who, now),
            Self::Left(who, reason) => logic.left(who, reason, now),
        }
    }
}

/// A room's logic as its room holds it: home, or away on a job.
pub struct LogicSlot {
    kind: String,
    /// `None` while a job has it.
    held: Option<Box<LogicRoom>>,
    /// What it is to hear when it is back.
    waiting: Vec<(Notice, Instant)>,
    /// When its owner has it down to wake it (`None` while away).
    scheduled: Option<Instant>,
    /// The `type_options` it was made from, and its last snapshot, encoded: what a checkpoint
    /// written while it is away carries.
    options: Value,
    last_snapshot: std::cell::RefCell<Option<Vec<u8>>>,
    /// Its logic replays its broadcasts (`RoomLogic::replays_broadcasts`): the room's offset
    /// its last snapshot was taken at, from which a restored logic replays.
    replays: bool,
    /// The room's offset and its bytes appended so far (`Room::appended`) when the last
    /// snapshot was taken.
    snapshot_at: std::cell::Cell<Option<(u64, u64)>>,
}

impl LogicSlot {
    pub fn new(logic: Box<LogicRoom>) -> Self {
        Self {
            kind: logic.kind().to_owned(),
            options: logic.options().clone(),
            replays: logic.replays_broadcasts(),
            snapshot_at: std::cell::Cell::new(None),
            held: Some(logic),
            waiting: Vec::new(),
            scheduled: None,
            last_snapshot: std::cell::RefCell::new(None),
        }
    }

    /// The `type_options` the logic was made from.
    pub fn options(&self) -> &Value {
        &self.options
    }

    /// The logic's snapshot (`RoomLogic::snapshot`), encoded: taken now if the logic is home,
    /// else the last one taken (a checkpoint written during a tick keeps it).
    pub fn snapshot_bytes(&self) -> Option<Vec<u8>> {
        if let Some(logic) = self.held.as_deref() {
            let taken = logic
                .snapshot()
                .map(|s| parlor_protocol::encode_value(&s).to_vec());
            *self.last_snapshot.borrow_mut() = taken;
        }
        self.last_snapshot.borrow().clone()
    }

    /// Whether its logic replays its broadcasts since a snapshot.
    pub fn replays(&self) -> bool {
        self.replays
    }

    /// The room's offset and appended bytes when a replaying logic's last snapshot was taken.
    pub fn snapshot_at(&self) -> Option<(u64, u64)> {
        self.snapshot_at.get()
    }

    /// A replaying logic's snapshot for a checkpoint with the room at `now` (its offset and
    /// appended bytes): taken now if `due` and the logic is home, else the last one; and the
    /// offset its replay starts at.
    pub fn replay_snapshot(&self, now: (u64, u64), due: bool) -> (Option<Vec<u8>>, Option<u64>) {
        if self.held.is_some() && due {
            let taken = self.snapshot_bytes();
            self.snapshot_at.set(taken.as_ref().map(|_| now));
        }
        (
            self.last_snapshot.borrow().clone(),
            self.snapshot_at.get().map(|(offset, _)| offset),
        )
    }

    /// A restored logic's snapshot was the one taken with the room at `at`.
    pub fn restored_from(&self, snapshot: Vec<u8>, at: (u64, u64)) {
        *self.last_snapshot.borrow_mut() = Some(snapshot);
        self.snapshot_at.set(Some(at));
    }

    /// When the owner has the logic down to be woken.
    pub fn scheduled(&self) -> Option<Instant> {
        self.scheduled
    }

    pub fn set_scheduled(&mut self, at: Option<Instant>) {
        self.scheduled = at;
    }

    /// The room's type name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The logic, unless a job has it.
    pub fn held(&mut self) -> Option<&mut LogicRoom> {
        self.held.as_deref_mut()
    }

    pub fn held_ref(&self) -> Option<&LogicRoom> {
        self.held.as_deref()
    }

    pub fn is_away(&self) -> bool {
        self.held.is_none()
    }

    /// Takes the logic out for a job.
    pub fn take(&mut self) -> Option<Box<LogicRoom>> {
        self.held.take()
    }

    /// Tells the logic of `notice` now, or keeps it for when it is back.
    pub fn tell(&mut self, notice: Notice, now: Instant) -> Vec<Effect> {
        match self.held.as_deref_mut() {
            Some(logic) => notice.tell(logic, now),
            None => {
                self.waiting.push((notice, now));
                Vec::new()
            }
        }
    }

    /// The logic is back from its job, which asked for `effects`: it hears what it missed,
    /// and the effects of all that are returned in the order the logic asked for them.
    pub fn put_back(&mut self, mut logic: Box<LogicRoom>, mut effects: Vec<Effect>) -> Vec<Effect> {
        for (notice, at) in self.waiting.drain(..) {
            effects.extend(notice.tell(&mut logic, at));
        }
        self.held = Some(logic);
        effects
    }
}
