//! Rooms with logic (`crate::game`): a room made with a `room_type` holds a `LogicRoom`, and
//! the registry hands it the room's moments (a newcomer's attempt, its arrival, a member's
//! message, a departure, the clock) and carries out what the logic asks, with the room's
//! ordinary frames: a broadcast is an `event` with an offset, in the history, from the nil
//! session id; a send to one member is a `direct`; state changes are `state_patch`es with
//! versions. Clients may not go around it: in such a room a member's `emit` goes to the logic,
//! and state writes and the owner's actions are the logic's alone (`logic_only`).

use super::*;
use crate::game::{LogicDone, LogicJob, LogicRoom, LogicSlot, Notice, Reply};

/// Effects one request, tick or departure may cause, the ones they cause in turn included;
/// past it the rest are dropped and the room ends (a logic that kicks in `left` forever).
const MAX_EFFECTS_PER_CALL: usize = 10_000;

/// How long one tick (or timer) of a room's logic may run; a room whose tick runs longer ends
/// (`ended`) once it returns. The registry cannot stop a tick that never returns.
pub const MAX_TICK_TIME: Duration = Duration::from_millis(250);

/// A room's new logic, and what it asked for as it was made.
pub(super) type MadeLogic = (Box<LogicRoom>, Vec<Effect>);

impl<O: Outlet> Registry<O> {
    /// The logic for a room made with `rules`, if they name a room type: made from its
    /// `type_options`, or refused.
    pub(super) fn make_logic(
        &mut self,
        name: &str,
        rules: &RoomRules,
    ) -> Result<Option<MadeLogic>, RequestError> {
        let Some(kind) = &rules.room_type else {
            return Ok(None);
        };
        let factory = self
            .types
            .get(kind)
            .ok_or_else(|| RequestError::UnknownRoomType(kind.clone()))?
            .clone();
        // A room kept from an earlier run (the same name and type) goes on from its snapshot:
        // the newest, which may be one not handed to the store yet.
        let handed = self.logic_source.as_ref().and_then(|source| {
            let gone = self.logic_gone.iter().rev().find(|(gone, _)| gone == name);
            gone.map(|(_, stored)| stored.clone())
                .or_else(|| source.load(name))
        });
        let stored = handed.filter(|stored| stored.room_type == *kind);
        if let Some(stored) = stored {
            match parlor_protocol::decode_value::<Value>(&stored.snapshot, 256)
                .map_err(|err| crate::game::Refusal::new("bad_snapshot", err.to_string()))
                .and_then(|snapshot| {
                    LogicRoom::restore(
                        kind,
                        &*factory,
                        &stored.type_options,
                        Vec::new(),
                        snapshot,
                        self.now,
                    )
                }) {
                Ok((logic, effects)) => return Ok(Some((Box::new(logic), effects))),
                Err(refusal) => {
                    tracing::warn!(
                        "room {name:?}: its stored {kind:?} logic did not restore: {refusal}"
                    )
                }
            }
        }
        let (logic, effects) = LogicRoom::create(kind, &*factory, &rules.type_options, self.now)
            .map_err(RequestError::RoomRefused)?;
        Ok(Some((Box::new(logic), effects)))
    }

    /// Seats `id` in `room_name` (every other check made): a room with logic asks it first,
    /// and tells it after. A newly made room its logic refuses its maker in goes again.
    pub(super) fn enter(
        &mut self,
        id: SessionId,
        room_name: &str,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        let player = self.player(id, room_name);
        let now = self.now;
        if let Some(slot) = self.rooms.get_mut(room_name).and_then(|r| r.logic.as_mut()) {
            let Some(logic) = slot.held() else {
                return Err(RequestError::RoomBusy(room_name.to_owned()));
            };
            match logic.joining(&player, now) {
                Ok(effects) => self.carry_out(room_name, effects),
                Err(refusal) => {
                    if self
                        .rooms
                        .get(room_name)
                        .is_some_and(|r| r.members.is_empty())
                    {
                        self.remove_room(room_name);
                    }
                    self.end_failed_logic(room_name);
                    self.schedule_logic(room_name);
                    return Err(RequestError::RoomRefused(refusal));
                }
            }
        }
        self.admit(id, room_name, reference);
        if let Some(logic) = self.held_logic(room_name) {
            let effects = logic.joined(player, now);
            self.logic_ran(room_name);
            self.carry_out(room_name, effects);
        }
        Ok(())
    }

    /// A member's `emit` to a room with logic: the logic takes it, refuses it or answers it.
    pub(super) fn logic_message(
        &mut self,
        id: SessionId,
        room_name: &str,
        event: &str,
        data: Value,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        let now = self.now;
        let Some(slot) = self.rooms.get_mut(room_name).and_then(|r| r.logic.as_mut()) else {
            return Err(RequestError::NotInRoom(room_name.to_owned()));
        };
        let Some(logic) = slot.held() else {
            return Err(RequestError::RoomBusy(room_name.to_owned()));
        };
        let (answer, effects) = logic.message(id, event, data, now);
        self.logic_ran(room_name);
        self.carry_out(room_name, effects);
        match answer.map_err(RequestError::RoomRefused)? {
            Reply::Ok | Reply::Input => Ok(Answered::No),
            Reply::Data(data) => {
                if let Some(reference) = reference {
                    self.send_to(
                        id,
                        &ServerFrame::Ok {
                            reference,
                            data: Some(data),
                        },
                    );
                }
                Ok(Answered::Yes)
            }
        }
    }

    /// Member `id` of `room_name` went away (`back`: false) or came back: the logic hears it.
    pub(super) fn logic_presence(&mut self, room_name: &str, id: SessionId, back: bool) {
        let notice = if back {
            Notice::Back(id)
        } else {
            Notice::Away(id)
        };
        self.tell_logic(room_name, notice);
    }

    /// `id` left `room_name` (already out of its members): the logic hears it.
    pub(super) fn logic_left(&mut self, room_name: &str, id: SessionId, reason: LeaveReason) {
        self.tell_logic(room_name, Notice::Left(id, reason));
    }

    /// Tells `room_name`'s logic of a moment now, or when it is back from its job.
    fn tell_logic(&mut self, room_name: &str, notice: Notice) {
        let now = self.now;
        if let Some(slot) = self.rooms.get_mut(room_name).and_then(|r| r.logic.as_mut()) {
            let effects = slot.tell(notice, now);
            self.logic_ran(room_name);
            self.carry_out(room_name, effects);
        }
    }

    /// `room_name`'s logic ran: its next wake is set again, and a cluster home keeps a
    /// snapshot-giving logic's checkpoint current (its next commit writes it).
    fn logic_ran(&mut self, room_name: &str) {
        self.schedule_logic(room_name);
        let gives = self
            .rooms
            .get(room_name)
            .and_then(|r| r.logic.as_ref()?.held_ref())
            .is_some_and(LogicRoom::gives_snapshots);
        // A logic that replays its broadcasts needs its checkpoint written only when its
        // snapshot is due: until then its frames in the room's log carry what changed.
        let due = self
            .rooms
            .get(room_name)
            .is_some_and(|r| self.snapshot_due(r));
        if gives && due && self.host.is_some() {
            self.touch(room_name);
        }
        if gives && self.logic_source.is_some() {
            self.logic_changed.insert(room_name.to_owned());
        }
    }

    /// The snapshots of the rooms whose logic changed since the last call (and the last ones
    /// of rooms gone meanwhile), for a single node's store to write.
    pub fn take_stored_logic(&mut self) -> Vec<(String, crate::game::StoredLogic)> {
        let mut taken = std::mem::take(&mut self.logic_gone);
        for name in std::mem::take(&mut self.logic_changed) {
            if let Some(stored) = self.rooms.get(&name).and_then(|r| stored_logic(r)) {
                taken.retain(|(gone, _)| *gone != name);
                taken.push((name, stored));
            }
        }
        taken
    }

    /// Puts `room_name`'s logic down to be woken when it next wants the clock (no wake while
    /// it is away on a job, or when it wants none): one entry per room in `logic_deadlines`,
    /// so the clock finds the rooms due without looking at the others.
    pub(super) fn schedule_logic(&mut self, room_name: &str) {
        let Some(slot) = self.rooms.get_mut(room_name).and_then(|r| r.logic.as_mut()) else {
            return;
        };
        let next = slot.held_ref().and_then(LogicRoom::next_deadline);
        let before = slot.scheduled();
        if before == next {
            return;
        }
        slot.set_scheduled(next);
        if let Some(at) = before {
            self.logic_deadlines.remove(&(at, room_name.to_owned()));
        }
        if let Some(at) = next {
            self.logic_deadlines.insert((at, room_name.to_owned()));
        }
    }

    /// `room_name`'s logic, if it has logic and no job has it.
    fn held_logic(&mut self, room_name: &str) -> Option<&mut LogicRoom> {
        self.rooms.get_mut(room_name)?.logic.as_mut()?.held()
    }

    /// The room is going away: its logic's last word (only its state and messages to members
    /// still there count; there are none).
    pub(super) fn logic_dispose(&mut self, room: &mut Room<O>) {
        // Logic away on a job is disposed of when it comes back to no room.
        if let Some(logic) = room.logic.as_mut().and_then(LogicSlot::held) {
            let _ = logic.dispose(self.now);
        }
    }

    /// Sets the clock the rooms' logic sees (a request's time), and nothing else.
    pub fn set_clock(&mut self, now: Instant) {
        self.now = now;
    }

    /// Runs the ticks and timers due at `now` in every room with logic: here, or, with a
    /// logic pool, as `LogicJob`s the owner takes (`take_logic_jobs`) and hands back done
    /// (`logic_done`).
    pub(super) fn advance_logic(&mut self, now: Instant) {
        let due: Vec<String> = self
            .logic_deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, name)| name.clone())
            .collect();
        for room_name in due {
            let Some(room) = self.rooms.get_mut(&room_name) else {
                continue;
            };
            let created = room.created;
            let Some(logic) = room.logic.as_mut().and_then(LogicSlot::take) else {
                continue;
            };
            self.schedule_logic(&room_name);
            let job = LogicJob {
                room: room_name,
                created,
                logic,
                now,
            };
            if self.logic_pool {
                self.logic_out += 1;
                self.logic_jobs.push(job);
            } else {
                self.logic_done(job.run());
            }
        }
    }

    /// The jobs (due ticks and timers) to run on the logic pool, with `logic_pool` set.
    pub fn take_logic_jobs(&mut self) -> Vec<LogicJob> {
        std::mem::take(&mut self.logic_jobs)
    }

    /// A room's logic is back from its job: it hears what it missed meanwhile, what it asked
    /// for is carried out, and the requests that waited for it go on. A room that ended
    /// meanwhile disposes of it.
    pub fn logic_done(&mut self, done: LogicDone) {
        let LogicDone {
            room: room_name,
            created,
            mut logic,
            effects,
            took,
            ticked,
        } = done;
        if self.logic_pool {
            self.logic_out = self.logic_out.saturating_sub(1);
        }
        let Some(slot) = self
            .rooms
            .get_mut(&room_name)
            .filter(|r| r.created == created)
            .and_then(|r| r.logic.as_mut())
            .filter(|slot| slot.is_away())
        else {
            let _ = logic.dispose(self.now);
            return;
        };
        let effects = slot.put_back(logic, effects);
        self.logic_ran(&room_name);
        if let Some(lateness) = ticked {
            self.metrics.logic_tick_seconds.observe(took.as_secs_f64());
            self.metrics
                .logic_tick_lateness_seconds
                .observe(lateness.as_secs_f64());
        }
        self.carry_out(&room_name, effects);
        if took > MAX_TICK_TIME {
            self.metrics.logic_overruns.inc();
            let why = format!(
                "its logic ran {} ms at once (at most {} ms)",
                took.as_millis(),
                MAX_TICK_TIME.as_millis()
            );
            self.end_room(&room_name, &why);
        }
        // A cluster home replays them one at a time, to answer each to its own origin.
        if self.host.is_none() {
            self.replay_waiting();
        }
        self.evict_overflowed();
    }

    /// When a room's logic next wants the clock (`advance`), if any does (logic away on a
    /// job is not counted: it comes back through `logic_done`).
    pub fn next_logic_deadline(&self) -> Option<Instant> {
        self.logic_deadlines.first().map(|(at, _)| *at)
    }

    /// Carries out what `room_name`'s logic asked for, in order, and whatever that makes its
    /// logic ask in turn (a kick makes it hear `left`).
    pub(super) fn carry_out(&mut self, room_name: &str, effects: Vec<Effect>) {
        self.logic_effects
            .extend(effects.into_iter().map(|e| (room_name.to_owned(), e)));
        if self.carrying_effects {
            return;
        }
        self.carrying_effects = true;
        let mut carried = 0;
        while let Some((room, effect)) = self.logic_effects.pop_front() {
            carried += 1;
            if carried > MAX_EFFECTS_PER_CALL {
                let mut rooms: std::collections::BTreeSet<String> =
                    self.logic_effects.drain(..).map(|(room, _)| room).collect();
                rooms.insert(room);
                for room in rooms {
                    self.end_room(&room, "its logic asked for too much at once");
                }
                break;
            }
            self.carry_out_one(&room, effect);
        }
        self.carrying_effects = false;
    }

    fn carry_out_one(&mut self, room_name: &str, effect: Effect) {
        if !self.rooms.contains_key(room_name) {
            return;
        }
        match effect {
            Effect::Broadcast {
                event,
                data,
                except,
            } => {
                self.broadcast(room_name, except, |offset| {
                    ServerFrame::Event(EventFrame {
                        room: room_name.to_owned(),
                        from: SessionId::NIL,
                        event,
                        data,
                        offset,
                    })
                });
            }
            Effect::Send { to, event, data } => {
                if self.rooms.get(room_name).is_some_and(|r| r.is_member(to)) {
                    self.send_to(
                        to,
                        &ServerFrame::Direct(DirectFrame {
                            from: SessionId::NIL,
                            event,
                            data,
                        }),
                    );
                }
            }
            Effect::View { to, data } => {
                if let Some(room) = self.rooms.get_mut(room_name).filter(|r| r.is_member(to)) {
                    room.views.insert(to, data);
                    self.send_view(to, room_name);
                }
            }
            Effect::State(ops) => {
                if let Err(err) = self.apply_state(room_name, SessionId::NIL, ops) {
                    tracing::warn!(
                        "room {room_name:?}: its logic's state change was refused: {err}"
                    );
                }
            }
            Effect::Kick(who) => {
                if self.rooms.get(room_name).is_some_and(|r| r.is_member(who)) {
                    let _ = self.drop_membership(who, room_name, LeaveReason::Kicked);
                }
            }
            Effect::Lock(locked) => {
                if let Some(room) = self.rooms.get_mut(room_name) {
                    room.locked_by_hand = locked;
                    self.announce_room_update(room_name, None);
                    self.room_changed(room_name);
                }
            }
            Effect::Metadata(metadata) => match self.limits.check_metadata(&metadata) {
                Ok(()) => {
                    if let Some(room) = self.rooms.get_mut(room_name) {
                        room.metadata = metadata;
                        self.announce_room_update(room_name, None);
                        self.room_changed(room_name);
                    }
                }
                Err(err) => {
                    tracing::warn!("room {room_name:?}: its logic's metadata was refused: {err}")
                }
            },
            Effect::End(why) => self.end_room(room_name, &why),
        }
    }

    /// Sends member `id` its view of `room_name`, if its logic set one.
    pub(super) fn send_view(&mut self, id: SessionId, room_name: &str) {
        let Some(data) = self
            .rooms
            .get(room_name)
            .and_then(|r| r.views.get(&id))
            .cloned()
        else {
            return;
        };
        self.send_to(
            id,
            &ServerFrame::View(parlor_protocol::ViewFrame {
                room: room_name.to_owned(),
                data,
            }),
        );
    }

    /// A room whose logic failed (panicked) ends.
    fn end_failed_logic(&mut self, room_name: &str) {
        let failed = self
            .rooms
            .get(room_name)
            .and_then(|r| r.logic.as_ref()?.held_ref()?.ended().map(str::to_owned));
        if let Some(why) = failed {
            self.end_room(room_name, &why);
        }
    }

    /// Ends a room: every member leaves (`ended`), and the room goes.
    pub(super) fn end_room(&mut self, room_name: &str, why: &str) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        tracing::info!("room {room_name:?} ended: {why}");
        for id in room.member_ids() {
            let _ = self.drop_membership(id, room_name, LeaveReason::Ended);
        }
        self.remove_room(room_name);
    }

    /// Removes an empty room whatever its rules say.
    pub(super) fn remove_room(&mut self, room_name: &str) {
        let Some(mut room) = self.rooms.remove(room_name) else {
            return;
        };
        if let Some(kind) = room.room_type() {
            self.metrics.logic_room(kind, false);
        }
        if let Some(at) = room.logic.as_ref().and_then(LogicSlot::scheduled) {
            self.logic_deadlines.remove(&(at, room_name.to_owned()));
        }
        // A single node's store keeps the logic's last snapshot for the room's next run.
        if self.logic_source.is_some() && self.logic_changed.remove(room_name) {
            if let Some(stored) = stored_logic(&room) {
                self.logic_gone.push((room_name.to_owned(), stored));
            }
        }
        self.logic_dispose(&mut room);
        self.rooms_with_patches.retain(|r| r != room_name);
        if !room.private {
            self.lobby.removed(room_name);
        }
        if let Some(host) = &mut self.host {
            host.touched.remove(room_name);
            host.disposed.insert(room_name.to_owned());
        }
    }
}

/// Room `room`'s logic as a store keeps it, if it gives a snapshot.
fn stored_logic<O>(room: &Room<O>) -> Option<crate::game::StoredLogic> {
    let slot = room.logic.as_ref()?;
    Some(crate::game::StoredLogic {
        room_type: slot.kind().to_owned(),
        type_options: slot.options().clone(),
        snapshot: slot.snapshot_bytes()?,
    })
}
