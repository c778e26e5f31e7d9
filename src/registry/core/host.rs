//! The registry as a room's home on a cluster node. The rules are the ones every other file
//! here states; what differs is where their results go:
//!
//! - A room frame is not delivered or kept here: it becomes an `Append` for the room's log
//!   (Redis), which gives it its offset and carries it to every node with members. The
//!   registry still counts offsets itself, provisionally: a `joined` snapshot says where its
//!   stream starts by that count, and the engine moves it by what the log answered.
//! - Every room whose durable part changed is noted (`touched`), so the engine can write its
//!   `RoomCheckpoint` with the frames; a room that is gone is noted too.
//! - Sessions here are the members of the rooms homed here, wherever they are connected: the
//!   engine adds one when it first asks something of a room here, marks it away and back,
//!   and removes it, as its own node tells it. The grace clock is the session node's, so a
//!   host never expires anyone by itself.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::*;

/// A room frame for a room's log, encoded with offset 0 as its last field (the log puts the
/// real one in its place), and the offset the registry counted for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Append {
    pub room: String,
    pub provisional: u64,
    pub body: Bytes,
    pub skip: Option<SessionId>,
}

/// What a call to a hosting registry left for the engine.
#[derive(Debug, Default)]
pub struct HostEffects {
    /// Room frames, in the order they were made.
    pub appends: Vec<Append>,
    /// Rooms whose checkpoint changed.
    pub touched: BTreeSet<String>,
    /// Rooms that are gone (their last member left and they were not made to stay).
    pub disposed: BTreeSet<String>,
}

impl HostEffects {
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.touched.is_empty() && self.disposed.is_empty()
    }
}

/// The room's own broadcasts (events from the nil id) among `frames`, from offset `from` on,
/// in order: what a replaying logic takes back.
fn broadcasts(frames: &[bytes::Bytes], from: u64) -> Vec<(String, Value)> {
    frames
        .iter()
        .filter_map(|frame| match parlor_protocol::decode_server(frame, 256) {
            Ok(ServerFrame::Event(event)) if event.from == BACKEND && event.offset >= from => {
                Some((event.event, event.data))
            }
            _ => None,
        })
        .collect()
}

/// A member as a room's checkpoint keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberCheckpoint {
    pub session: SessionId,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub away: bool,
    /// The node the member is connected to (or was, when away).
    #[serde(default)]
    pub node: Option<String>,
    /// It may read the room, not change it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Everything about a room but its state (kept apart, since it is written only when its
/// version changes): what a node needs to become the room's home.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomCheckpoint {
    pub max_members: u32,
    pub private: bool,
    #[serde(default)]
    pub password: Option<String>,
    pub metadata: Metadata,
    pub dispose_when_empty: bool,
    pub locked_by_hand: bool,
    pub owner: Option<SessionId>,
    /// In join order.
    pub members: Vec<MemberCheckpoint>,
    pub created: u64,
    pub version: u64,
    /// The history epoch clients hold positions in.
    pub epoch: String,
    /// A room with logic's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
    /// The `type_options` its logic was made from.
    #[serde(default = "nil", skip_serializing_if = "Value::is_nil")]
    pub type_options: Value,
    /// Its logic's snapshot (`RoomLogic::snapshot`), encoded apart so that however deep it is
    /// the checkpoint stays readable. Without one, a node that takes the room over ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logic: Option<serde_bytes::ByteBuf>,
    /// For a logic that replays its broadcasts (`RoomLogic::replays_broadcasts`): the room's
    /// offset its snapshot was taken at. The room's frames from there on, in its log, bring a
    /// restored logic back to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logic_from: Option<u64>,
}

fn nil() -> Value {
    Value::Nil
}

impl<O: Outlet> Registry<O> {
    /// A registry that hosts rooms for a cluster node (see the module docs).
    pub fn host(limits: RegistryLimits, metrics: Arc<Metrics>) -> Self {
        let mut registry = Self::with_metrics(limits, metrics);
        registry.host = Some(HostEffects::default());
        registry
    }

    /// Whether this registry hosts rooms for a cluster node.
    pub fn is_host(&self) -> bool {
        self.host.is_some()
    }

    /// What the calls since the last take left for the engine.
    pub fn take_effects(&mut self) -> HostEffects {
        self.host.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Notes that room `room_name`'s durable part changed (a hosting registry only).
    pub(super) fn touch(&mut self, room_name: &str) {
        if let Some(host) = &mut self.host {
            host.touched.insert(room_name.to_owned());
        }
    }

    /// Session `id` (connected anywhere) as the rooms here know it; added if new, its outlet
    /// and profile replaced if not.
    pub fn ensure_session(&mut self, id: SessionId, outlet: Option<O>, profile: Profile) {
        match self.sessions.get_mut(&id) {
            Some(entry) => {
                entry.profile = profile;
                // Away or not is the session's own, as its node last said: a new way to reach
                // it replaces the old, no way leaves it.
                if entry.away_since.is_none() && outlet.is_some() {
                    entry.outlet = outlet;
                }
            }
            None => {
                let away = outlet.is_none();
                self.sessions.insert(
                    id,
                    SessionEntry {
                        outlet,
                        connection: id,
                        profile,
                        rooms: Vec::new(),
                        away_since: away.then_some(self.now),
                        waiting: VecDeque::new(),
                    },
                );
                if away {
                    self.away.insert(id);
                }
            }
        }
    }

    /// Forgets session `id` if it is in no room here: a hosting registry keeps only members.
    pub fn forget_if_roomless(&mut self, id: SessionId) {
        if self
            .sessions
            .get(&id)
            .is_some_and(|e| e.rooms.is_empty() && e.waiting.is_empty())
        {
            self.sessions.remove(&id);
            self.away.remove(&id);
            self.lobby.unsubscribe(id);
        }
    }

    /// Member `id` went away (its node says so): seats held, rooms told `away`.
    pub fn set_away(&mut self, id: SessionId) {
        match self.sessions.get(&id) {
            // It left its last room here while its node was telling us it went away (a kick
            // crossing the news): it has nothing here to come back to.
            Some(entry) if entry.rooms.is_empty() => self.forget_if_roomless(id),
            Some(entry) if entry.away_since.is_none() => self.go_away(id),
            _ => {}
        }
        self.evict_overflowed();
    }

    /// Member `id` is back, reached through `outlet`: rooms told `back`.
    pub fn set_back(&mut self, id: SessionId, outlet: O, node: Option<String>) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        entry.profile.node = node;
        let was_away = entry.away_since.take().is_some();
        entry.outlet = Some(outlet.clone());
        self.away.remove(&id);
        let rooms = entry.rooms.clone();
        let user = entry.profile.user.clone();
        for room_name in &rooms {
            if let Some(member) = self.rooms.get_mut(room_name).and_then(|r| r.member_mut(id)) {
                member.outlet = Some(outlet.clone());
            }
            if was_away {
                self.broadcast(room_name, Some(id), |offset| {
                    ServerFrame::Presence(PresenceFrame {
                        room: room_name.clone(),
                        session: id,
                        status: PresenceStatus::Back,
                        reason: None,
                        user: user.clone(),
                        offset,
                    })
                });
                self.logic_presence(room_name, id, true);
                self.send_view(id, room_name);
            }
            self.touch(room_name);
        }
        self.evict_overflowed();
    }

    /// Member `id` is now reached through node `node` (`None`: handed over, on no node).
    pub fn set_node(&mut self, id: SessionId, node: Option<String>) {
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.profile.node = node;
        }
    }

    /// Whether session `id` is a member of room `room_name` here.
    pub fn is_member(&self, room_name: &str, id: SessionId) -> bool {
        self.rooms
            .get(room_name)
            .is_some_and(|room| room.is_member(id))
    }

    /// Member `id` leaves every room here for `reason` (its node ended it); the rooms are told.
    pub fn remove(&mut self, id: SessionId, reason: LeaveReason) {
        self.remove_session(id, reason);
        self.evict_overflowed();
    }

    /// Member `id`'s node was taken for lost: it leaves every room here (`node_lost`), the
    /// rooms are told, and so is the member (`left`), should its node be alive after all (a
    /// node cut off from Redis for longer than its heartbeat, say).
    pub fn drop_lost(&mut self, id: SessionId) {
        let rooms = self
            .sessions
            .get(&id)
            .map(|entry| entry.rooms.clone())
            .unwrap_or_default();
        for room in rooms {
            let _ = self.drop_membership(id, &room, LeaveReason::NodeLost);
        }
        self.remove_session(id, LeaveReason::NodeLost);
        self.evict_overflowed();
    }

    /// The sessions in rooms here whose node is `node` (for a node found dead).
    pub fn sessions_on(&self, node: &str) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, e)| e.profile.node.as_deref() == Some(node))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The rooms here.
    pub fn room_names(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Whether room `room_name` is here.
    pub fn has_room(&self, room_name: &str) -> bool {
        self.rooms.contains_key(room_name)
    }

    /// Room `room_name` as its checkpoint keeps it.
    pub fn checkpoint(&self, room_name: &str) -> Option<RoomCheckpoint> {
        let room = self.rooms.get(room_name)?;
        let logic = room.logic.as_ref();
        let (snapshot, logic_from) = match logic {
            Some(slot) if slot.replays() => slot.replay_snapshot(
                (room.history.next_offset, room.appended),
                self.snapshot_due(room),
            ),
            Some(slot) => (slot.snapshot_bytes(), None),
            None => (None, None),
        };
        Some(RoomCheckpoint {
            max_members: u32::try_from(room.max_members).unwrap_or(u32::MAX),
            private: room.private,
            password: room.password.clone(),
            metadata: room.metadata.clone(),
            dispose_when_empty: room.dispose_when_empty,
            locked_by_hand: room.locked_by_hand,
            owner: room.owner,
            members: room
                .members
                .iter()
                .map(|m| {
                    let profile = self.sessions.get(&m.id).map(|e| &e.profile);
                    MemberCheckpoint {
                        session: m.id,
                        user: profile.and_then(|p| p.user.clone()),
                        away: m.outlet.is_none(),
                        node: profile.and_then(|p| p.node.clone()),
                        read_only: room.readers.contains(&m.id),
                    }
                })
                .collect(),
            created: room.created,
            version: room.version,
            epoch: room.history.epoch.clone(),
            room_type: room.room_type().map(str::to_owned),
            type_options: logic.map_or(Value::Nil, |l| l.options().clone()),
            logic: snapshot.map(serde_bytes::ByteBuf::from),
            logic_from,
        })
    }

    /// Whether a logic that replays its broadcasts is due a new snapshot (one that does not
    /// always is): none yet; or half of what the room's log keeps came after it (at most 256
    /// frames: the log must still hold them when the room is taken over), or 1 MiB of frames
    /// (what a new home reads back stays bounded).
    pub(super) fn snapshot_due(&self, room: &Room<O>) -> bool {
        let Some(slot) = room.logic.as_ref().filter(|s| s.replays()) else {
            return true;
        };
        let Some((offset, appended)) = slot.snapshot_at() else {
            return true;
        };
        let limit = (self.limits.history_frames / 2).min(256) as u64;
        room.history.next_offset.saturating_sub(offset) >= limit
            || room.appended.saturating_sub(appended) >= crate::game::MAX_SNAPSHOT_BYTES as u64
    }

    /// Whether room `room_name`'s logic is away running a tick (requests for it wait).
    pub fn logic_is_away(&self, room_name: &str) -> bool {
        self.rooms
            .get(room_name)
            .and_then(|r| r.logic.as_ref())
            .is_some_and(LogicSlot::is_away)
    }

    /// Whether room `room_name` runs logic here (a restored room whose logic could not be
    /// restored does not).
    pub fn has_logic(&self, room_name: &str) -> bool {
        self.rooms.get(room_name).is_some_and(|r| r.logic.is_some())
    }

    /// Ends room `room_name`: every member leaves (`ended`), and the room goes.
    pub fn end(&mut self, room_name: &str, why: &str) {
        self.end_room(room_name, why);
        self.evict_overflowed();
    }

    /// Runs the ticks and timers due at `now` in the rooms with logic here.
    pub fn advance_logic_now(&mut self, now: Instant) {
        self.now = now;
        self.advance_logic(now);
        self.evict_overflowed();
    }

    /// Room `room_name`'s state and its version.
    pub fn state_of(&self, room_name: &str) -> Option<(&Document, u64)> {
        self.rooms.get(room_name).map(|r| (&r.state, r.version))
    }

    /// The registry's public listing of room `room_name` (with `private`), for the index.
    pub fn listing_of(&self, room_name: &str) -> Option<Listing> {
        self.rooms.get(room_name).map(|r| r.listing(room_name))
    }

    /// Makes room `room_name` here again from its checkpoint and state, its log's next offset
    /// being `next_offset`. `outlet` says how each member is reached now (`None`: away).
    ///
    /// `since` are the room's frames from its checkpoint's `logic_from` on (from its log), which
    /// a logic that replays its broadcasts takes back after its snapshot.
    pub fn restore(
        &mut self,
        room_name: &str,
        checkpoint: RoomCheckpoint,
        state: Document,
        next_offset: u64,
        since: &[bytes::Bytes],
        mut outlet: impl FnMut(&MemberCheckpoint) -> Option<O>,
    ) {
        let logic_from = checkpoint.logic_from;
        let checkpoint_logic = checkpoint.logic.clone().map(serde_bytes::ByteBuf::into_vec);
        let carried = (
            checkpoint.room_type.clone(),
            checkpoint.type_options.clone(),
            checkpoint.logic.clone(),
        );
        let rules = RoomRules {
            max_members: checkpoint.max_members as usize,
            private: checkpoint.private,
            password: checkpoint.password,
            metadata: checkpoint.metadata,
            dispose_when_empty: checkpoint.dispose_when_empty,
            room_type: checkpoint.room_type.clone(),
            type_options: checkpoint.type_options.clone(),
        };
        self.rooms_created = self.rooms_created.max(checkpoint.created);
        let mut room = Room::new(rules, checkpoint.created);
        room.locked_by_hand = checkpoint.locked_by_hand;
        room.owner = checkpoint.owner;
        room.state = state;
        room.version = checkpoint.version;
        room.history.epoch = checkpoint.epoch;
        room.history.next_offset = next_offset;
        for member in &checkpoint.members {
            let reach = if member.away { None } else { outlet(member) };
            let profile = Profile {
                resume_token: String::new(),
                user: member.user.clone(),
                rooms: None,
                node: member.node.clone(),
            };
            self.ensure_session(member.session, reach.clone(), profile);
            if let Some(entry) = self.sessions.get_mut(&member.session) {
                if !entry.rooms.iter().any(|r| r == room_name) {
                    entry.rooms.push(room_name.to_owned());
                }
            }
            let outlet_now = self
                .sessions
                .get(&member.session)
                .and_then(|e| e.outlet.clone());
            room.members.push(Member {
                id: member.session,
                outlet: outlet_now,
            });
            if member.read_only {
                room.readers.insert(member.session);
            }
        }
        let logic = self.restore_logic(carried, &room);
        let private = room.private;
        let gone = room.members.is_empty() && room.dispose_when_empty;
        if let Some((logic, _)) = &logic {
            if !gone {
                self.metrics.logic_room(logic.kind(), true);
            }
        }
        let effects = logic.map(|(mut logic, effects)| {
            if let Some(at) = logic_from.filter(|_| logic.replays_broadcasts()) {
                if since.len() as u64 != next_offset.saturating_sub(at) {
                    tracing::warn!(
                        "room {room_name:?}: its log holds {} of the {} frames since its \
                         snapshot; what is missing is not replayed",
                        since.len(),
                        next_offset.saturating_sub(at)
                    );
                }
                logic.replay(self.now, &broadcasts(since, at));
            }
            let slot = LogicSlot::new(logic);
            if let (Some(at), Some(snapshot)) = (logic_from, checkpoint_logic.clone()) {
                // What came since counts as appended after it.
                let behind = since.iter().map(|f| f.len() as u64).sum::<u64>();
                room.appended = behind;
                slot.restored_from(snapshot, (at, 0));
            }
            room.logic = Some(slot);
            effects
        });
        self.rooms.insert(room_name.to_owned(), room);
        if gone {
            // Made and never joined (its maker died first), or its last member went: gone,
            // as an emptied room goes.
            self.rooms.remove(room_name);
            if let Some(host) = &mut self.host {
                host.disposed.insert(room_name.to_owned());
            }
            return;
        }
        if !private {
            self.lobby.added(room_name);
        }
        // Its checkpoint and listing are written again by its new home.
        self.touch(room_name);
        self.schedule_logic(room_name);
        if let Some(effects) = effects {
            self.carry_out(room_name, effects);
        }
    }

    /// A room's logic made again from its checkpoint's snapshot, if it has one and its type
    /// takes it back.
    fn restore_logic(
        &self,
        (kind, options, snapshot): (Option<String>, Value, Option<serde_bytes::ByteBuf>),
        room: &Room<O>,
    ) -> Option<(Box<LogicRoom>, Vec<Effect>)> {
        let kind = kind.as_deref()?;
        let snapshot = snapshot?;
        let factory = self.types.get(kind)?;
        let snapshot = match parlor_protocol::decode_value::<Value>(&snapshot, 256) {
            Ok(snapshot) => snapshot,
            Err(err) => {
                tracing::warn!("a {kind:?} room's snapshot is unreadable: {err}");
                return None;
            }
        };
        let members = room
            .members
            .iter()
            .map(|m| crate::game::Player {
                session: m.id,
                user: self.user_of(m.id),
                read_only: room.readers.contains(&m.id),
            })
            .collect();
        match LogicRoom::restore(kind, &**factory, &options, members, snapshot, self.now) {
            Ok((logic, effects)) => Some((Box::new(logic), effects)),
            Err(refusal) => {
                tracing::warn!("a {kind:?} room did not restore: {refusal}");
                None
            }
        }
    }

    /// Forgets room `room_name` without telling anyone: this node is no longer its home.
    pub fn drop_room(&mut self, room_name: &str) {
        let Some(room) = self.rooms.remove(room_name) else {
            return;
        };
        self.rooms_with_patches.retain(|r| r != room_name);
        for member in room.members {
            if let Some(entry) = self.sessions.get_mut(&member.id) {
                entry.rooms.retain(|r| r != room_name);
            }
            self.forget_if_roomless(member.id);
        }
    }

    /// The log gave room `room_name`'s frames offsets up to `next` (exclusive): the registry's
    /// own count moves there.
    pub fn sync_offset(&mut self, room_name: &str, next: u64) {
        if let Some(room) = self.rooms.get_mut(room_name) {
            room.history.next_offset = next;
        }
    }

    /// Room `room_name`'s history epoch.
    pub fn history_of(&self, room_name: &str) -> Option<String> {
        self.rooms.get(room_name).map(|r| r.history.epoch.clone())
    }

    /// The offset the registry counts room `room_name`'s next frame at.
    pub fn next_offset(&self, room_name: &str) -> Option<u64> {
        self.rooms.get(room_name).map(|r| r.history.next_offset)
    }

    /// When room `room_name` was made (the cluster's clock, ms), for "oldest first".
    pub fn created_of(&self, room_name: &str) -> Option<u64> {
        self.rooms.get(room_name).map(|r| r.created)
    }

    /// Room `room_name`, just made here, was made at `created` by the cluster's clock.
    pub fn stamp(&mut self, room_name: &str, created: u64) {
        if let Some(room) = self.rooms.get_mut(room_name) {
            room.created = created;
            self.touch(room_name);
        }
    }

    /// Sends member `id` a `joined` with room `room_name` whole (a session that resumed where
    /// the log no longer reached back).
    pub fn send_joined(&mut self, id: SessionId, room_name: &str, reference: Option<Ref>) {
        let member = self
            .rooms
            .get(room_name)
            .is_some_and(|room| room.is_member(id));
        if !member {
            return;
        }
        if let Some(joined) = self.joined_frame(room_name, reference) {
            self.send_to(id, &joined);
        }
    }
}

/// Room `room_name` whole, as the backend API reads it, from its checkpoint and state (a
/// cluster node reads them from the store); its log's next offset is `next_offset`.
pub fn detail_of_checkpoint(
    room_name: &str,
    checkpoint: RoomCheckpoint,
    state: Document,
    next_offset: u64,
) -> RoomDetail {
    let rules = RoomRules {
        max_members: checkpoint.max_members as usize,
        private: checkpoint.private,
        password: checkpoint.password,
        metadata: checkpoint.metadata,
        dispose_when_empty: checkpoint.dispose_when_empty,
        room_type: None,
        type_options: Value::Nil,
    };
    let mut room: Room<()> = Room::new(rules, checkpoint.created);
    room.locked_by_hand = checkpoint.locked_by_hand;
    room.owner = checkpoint.owner;
    room.members = checkpoint
        .members
        .iter()
        .map(|m| Member {
            id: m.session,
            outlet: (!m.away).then_some(()),
        })
        .collect();
    RoomDetail {
        info: room.info(room_name),
        private: room.private,
        members: checkpoint
            .members
            .into_iter()
            .map(|m| MemberDetail {
                session: m.session,
                user: m.user,
                away: m.away,
            })
            .collect(),
        state,
        version: checkpoint.version,
        epoch: checkpoint.epoch,
        offset: next_offset,
    }
}
