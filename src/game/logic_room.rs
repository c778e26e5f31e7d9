//! `LogicRoom`, sans-IO: one room's logic and its clock. The owner (the registry) calls the
//! hooks through it with the time, and `advance`s it: due timers fire, then the tick, with the
//! inputs kept since the last one, in arrival order. A tick that comes late runs once, not
//! once per period missed (the missed ones are counted). Every call to the game's code is
//! guarded: a panic ends this room (an `Effect::End`), and no call reaches the logic again.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::{Ctx, Effect, Input, LeaveReason, Player, Refusal, Reply, RoomFactory, RoomLogic};
use parlor_protocol::{SessionId, Value};

/// Inputs a room keeps for its next tick; past it, a message answered `Input` is refused.
pub const MAX_INPUTS_PER_TICK: usize = 1024;
/// Timers one room may have set at once; past it, the oldest-named is dropped.
const MAX_TIMERS: usize = 64;

/// How the room's ticks went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickStats {
    pub ticks: u64,
    /// How late the last tick ran, after its due time.
    pub last_lateness: Duration,
    /// Periods that passed with no tick (the owner came too late).
    pub skipped: u64,
}

pub struct LogicRoom {
    kind: String,
    /// The `type_options` it was made from (made again from them on a new home).
    options: Value,
    /// Whether its logic has given a snapshot (so a cluster home keeps it current).
    gives_snapshots: std::cell::Cell<Option<bool>>,
    logic: Box<dyn RoomLogic>,
    members: Vec<Player>,
    started: Instant,
    tick_every: Option<Duration>,
    next_tick: Option<Instant>,
    inputs: Vec<Input>,
    timers: BTreeMap<String, Instant>,
    ended: Option<String>,
    stats: TickStats,
}

impl LogicRoom {
    /// Makes a room of type `kind` with `factory`, from its creator's `options`.
    pub fn create(
        kind: &str,
        factory: &RoomFactory,
        options: &Value,
        now: Instant,
    ) -> Result<(Self, Vec<Effect>), Refusal> {
        let mut ctx = Ctx::new(Vec::new(), None, Duration::ZERO);
        let logic = match catch_unwind(AssertUnwindSafe(|| factory(&mut ctx, options))) {
            Ok(made) => made?,
            Err(_) => {
                return Err(Refusal::new(
                    "room_failed",
                    format!("the {kind:?} room's logic failed while making the room"),
                ))
            }
        };
        let mut room = Self {
            kind: kind.to_owned(),
            options: options.clone(),
            gives_snapshots: std::cell::Cell::new(None),
            logic,
            members: Vec::new(),
            started: now,
            tick_every: None,
            next_tick: None,
            inputs: Vec::new(),
            timers: BTreeMap::new(),
            ended: None,
            stats: TickStats::default(),
        };
        let effects = room.settle(ctx, now);
        Ok((room, effects))
    }

    /// The room's type name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether the logic gives snapshots, as far as known (until it is first asked, it may):
    /// a cluster home then writes the room's checkpoint after every call that ran the logic,
    /// and a single node's store writes it, to keep them current.
    pub fn gives_snapshots(&self) -> bool {
        self.gives_snapshots.get() != Some(false)
    }

    /// The `type_options` the room was made from.
    pub fn options(&self) -> &Value {
        &self.options
    }

    /// Makes the room again on a new home from what `snapshot` gave (see
    /// `RoomLogic::restore`): made by `factory` from `options`, with `members`, its factory's
    /// asks dropped and its restore's returned.
    pub fn restore(
        kind: &str,
        factory: &RoomFactory,
        options: &Value,
        members: Vec<Player>,
        snapshot: Value,
        now: Instant,
    ) -> Result<(Self, Vec<Effect>), Refusal> {
        let (mut room, _) = Self::create(kind, factory, options, now)?;
        room.members = members;
        match room.call(now, |logic, ctx| logic.restore(ctx, snapshot)) {
            Some((Ok(()), effects)) => Ok((room, effects)),
            Some((Err(refusal), _)) => Err(refusal),
            None => Err(room.refusal()),
        }
    }

    /// What the logic holds (`RoomLogic::snapshot`), if it gives it and it is not too large.
    /// A panic gives nothing (the room is not carried).
    pub fn snapshot(&self) -> Option<Value> {
        if self.ended.is_some() {
            return None;
        }
        let logic = &self.logic;
        let snapshot = catch_unwind(AssertUnwindSafe(|| logic.snapshot()))
            .ok()
            .flatten();
        self.gives_snapshots.set(Some(snapshot.is_some()));
        let snapshot = snapshot?;
        if parlor_protocol::encoded_len(&snapshot) > super::MAX_SNAPSHOT_BYTES {
            tracing::warn!(
                "a {:?} room's snapshot is over {} bytes; it is not kept",
                self.kind,
                super::MAX_SNAPSHOT_BYTES
            );
            return None;
        }
        Some(snapshot)
    }

    /// Why the room ended, once it has.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    pub fn stats(&self) -> TickStats {
        self.stats
    }

    /// When `advance` has something to do next (a tick or a timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        let timer = self.timers.values().min().copied();
        match (self.next_tick, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether `player` may join. A panic refuses it and ends the room (see `ended`).
    pub fn joining(&mut self, player: &Player, now: Instant) -> Result<Vec<Effect>, Refusal> {
        match self.call(now, |logic, ctx| logic.joining(ctx, player)) {
            Some((Ok(()), effects)) => Ok(effects),
            Some((Err(refusal), _)) => Err(refusal),
            None => Err(self.refusal()),
        }
    }

    pub fn joined(&mut self, player: Player, now: Instant) -> Vec<Effect> {
        if !self.members.iter().any(|m| m.session == player.session) {
            self.members.push(player.clone());
        }
        let done = self.call(now, |logic, ctx| logic.joined(ctx, &player));
        self.effects_of(done)
    }

    /// A member's message. An `Input` reply keeps it for the next tick (refused with
    /// `overloaded` past `MAX_INPUTS_PER_TICK`).
    pub fn message(
        &mut self,
        from: SessionId,
        event: &str,
        data: Value,
        now: Instant,
    ) -> (Result<Reply, Refusal>, Vec<Effect>) {
        let kept = data.clone();
        match self.call(now, |logic, ctx| logic.message(ctx, from, event, data)) {
            Some((Ok(Reply::Input), effects)) => {
                if self.inputs.len() >= MAX_INPUTS_PER_TICK {
                    let refusal = Refusal::new(
                        "overloaded",
                        "the room has all the inputs it takes before its next tick",
                    );
                    return (Err(refusal), effects);
                }
                self.inputs.push(Input {
                    from,
                    event: event.to_owned(),
                    data: kept,
                });
                (Ok(Reply::Input), effects)
            }
            Some((answer, effects)) => (answer, effects),
            None => (Err(self.refusal()), self.end_effects()),
        }
    }

    pub fn away(&mut self, who: SessionId, now: Instant) -> Vec<Effect> {
        let done = self.call(now, |logic, ctx| logic.away(ctx, who));
        self.effects_of(done)
    }

    pub fn back(&mut self, who: SessionId, now: Instant) -> Vec<Effect> {
        let done = self.call(now, |logic, ctx| logic.back(ctx, who));
        self.effects_of(done)
    }

    pub fn left(&mut self, who: SessionId, reason: LeaveReason, now: Instant) -> Vec<Effect> {
        self.members.retain(|m| m.session != who);
        self.inputs.retain(|i| i.from != who);
        let done = self.call(now, |logic, ctx| logic.left(ctx, who, reason));
        self.effects_of(done)
    }

    /// The room goes away; nothing reaches the logic after this. (Its last asks are
    /// returned; an `End` among them changes nothing.)
    pub fn dispose(&mut self, now: Instant) -> Vec<Effect> {
        let effects = self
            .call(now, |logic, ctx| logic.dispose(ctx))
            .map(|(_, effects)| effects)
            .unwrap_or_default();
        self.ended.get_or_insert_with(|| "disposed".to_owned());
        effects
    }

    /// A hook's asks, or, if it panicked, the room's end.
    fn effects_of(&self, done: Option<((), Vec<Effect>)>) -> Vec<Effect> {
        match done {
            Some((_, effects)) => effects,
            None => self.end_effects(),
        }
    }

    /// Runs what is due at `now`: timers (earliest first), then one tick.
    pub fn advance(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            if self.ended.is_some() {
                return effects;
            }
            let due = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .min_by_key(|(_, at)| **at)
                .map(|(name, _)| name.clone());
            let Some(name) = due else { break };
            self.timers.remove(&name);
            match self.call(now, |logic, ctx| logic.timer(ctx, &name)) {
                Some((_, more)) => effects.extend(more),
                None => {
                    effects.extend(self.end_effects());
                    return effects;
                }
            }
        }
        let (Some(every), Some(due)) = (self.tick_every, self.next_tick) else {
            return effects;
        };
        if due > now {
            return effects;
        }
        self.stats.ticks += 1;
        self.stats.last_lateness = now - due;
        let mut next = due + every;
        if next <= now {
            let missed = (now - next).as_nanos() / every.as_nanos().max(1) + 1;
            self.stats.skipped += missed as u64;
            next = now + every;
        }
        self.next_tick = Some(next);
        let inputs = std::mem::take(&mut self.inputs);
        match self.call(now, |logic, ctx| logic.tick(ctx, inputs)) {
            Some((_, more)) => effects.extend(more),
            None => effects.extend(self.end_effects()),
        }
        effects
    }

    /// Runs one hook with a fresh `Ctx`; `None` if the room has ended or the hook panicked
    /// (which ends it).
    fn call<R>(
        &mut self,
        now: Instant,
        hook: impl FnOnce(&mut dyn RoomLogic, &mut Ctx) -> R,
    ) -> Option<(R, Vec<Effect>)> {
        if self.ended.is_some() {
            return None;
        }
        let mut ctx = Ctx::new(
            self.members.clone(),
            self.tick_every,
            now.saturating_duration_since(self.started),
        );
        let logic = &mut self.logic;
        match catch_unwind(AssertUnwindSafe(|| hook(logic.as_mut(), &mut ctx))) {
            Ok(result) => {
                let effects = self.settle(ctx, now);
                Some((result, effects))
            }
            Err(_) => {
                self.ended = Some(format!("the {:?} room's logic failed", self.kind));
                None
            }
        }
    }

    /// Whether its logic takes its broadcasts since a snapshot back (`RoomLogic::replay`).
    pub fn replays_broadcasts(&self) -> bool {
        let logic = &self.logic;
        self.ended.is_none()
            && catch_unwind(AssertUnwindSafe(|| logic.replays_broadcasts())).unwrap_or(false)
    }

    /// Hands a restored logic its broadcasts since its snapshot; what it asks meanwhile is
    /// dropped (it was carried out before). A logic that fails ends the room.
    pub fn replay(&mut self, now: Instant, broadcasts: &[(String, Value)]) {
        for (event, data) in broadcasts {
            if self
                .call(now, |logic, _| logic.replay(event, data))
                .is_none()
            {
                return;
            }
        }
    }

    /// Takes in what a hook changed of the room's clock, and returns what it asked for.
    fn settle(&mut self, ctx: Ctx, now: Instant) -> Vec<Effect> {
        if ctx.tick_every != self.tick_every {
            self.tick_every = ctx.tick_every;
            self.next_tick = ctx.tick_every.map(|every| now + every);
        }
        for (name, after) in ctx.timers {
            match after {
                Some(after) => {
                    self.timers.insert(name, now + after);
                    while self.timers.len() > MAX_TIMERS {
                        self.timers.pop_first();
                    }
                }
                None => {
                    self.timers.remove(&name);
                }
            }
        }
        if let Some(Effect::End(why)) = ctx.effects.iter().find(|e| matches!(e, Effect::End(_))) {
            self.ended = Some(why.clone());
        }
        ctx.effects
    }

    fn refusal(&self) -> Refusal {
        Refusal::new(
            "room_ended",
            self.ended
                .clone()
                .unwrap_or_else(|| "the room has ended".to_owned()),
        )
    }

    fn end_effects(&self) -> Vec<Effect> {
        vec![Effect::End(
            self.ended
                .clone()
                .unwrap_or_else(|| "the room has ended".to_owned()),
        )]
    }
}

#[cfg(test)]
mod tests;
