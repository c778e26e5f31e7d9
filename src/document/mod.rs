//! Collaborative documents: a room of type `yjs` (`TYPE`) holds a Yjs document (`yrs`) and
//! speaks the y-sync protocol with its members, as a `RoomLogic` like any game's, so a document
//! gets everything a room has (auth, presence, resume, cluster homes and failover, metrics).
//!
//! A member sends y-websocket messages as `emit`s of event `y` whose data is the message's
//! bytes (a MessagePack bin), exactly as y-websocket puts them on its socket: sync step 1 /
//! step 2 / update (outer type 0) and awareness (outer type 1). The room answers a step 1 in
//! the request's `ok` (its `data`: the room's step 2, its own step 1, and the awareness of
//! whoever is there), applies every update and sends it on to the other members (an `event`
//! `y`, from the nil id, with an offset and in the history), and relays awareness, removing a
//! member's awareness states when it leaves. Answers ride on the request, not on `direct`s,
//! so a client in several documents always knows which one answered. Bad input is refused with
//! the game-style `room_refused` and a reason of the document's own (`invalid_message`,
//! `invalid_update`, `update_too_large`, `document_too_large`); the document is untouched. A
//! reader (the token's read-only claim) gets the document and shows its awareness; its edits
//! are dropped (`read_only`).
//!
//! The document's whole state is its snapshot (`RoomLogic::snapshot`), so a cluster carries it
//! to a new home when its home is lost.

use std::collections::HashMap;

use yrs::sync::{Awareness, AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

use crate::game::{Ctx, LeaveReason, Refusal, Reply, RoomLogic, SessionId, Value};

/// The room type of documents.
pub const TYPE: &str = "yjs";
/// The event a y-sync or awareness message travels in, both ways.
pub const EVENT: &str = "y";
/// Awareness clients one member may speak for (a provider has one; tabs sharing a
/// connection a few), and that one document holds at once.
const MAX_CLIENTS_PER_MEMBER: usize = 8;
const MAX_CLIENTS: usize = 1024;

/// What one document may hold and take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocLimits {
    /// The largest message (one update or awareness update) a member may send.
    pub max_update_bytes: usize,
    /// The largest document, as its encoded state.
    pub max_document_bytes: usize,
}

impl Default for DocLimits {
    fn default() -> Self {
        Self {
            max_update_bytes: 256 * 1024,
            // A snapshot a cluster home keeps is at most 1 MiB (`game::MAX_SNAPSHOT_BYTES`).
            max_document_bytes: 1 << 20,
        }
    }
}

/// One document room's logic.
pub struct DocRoom {
    awareness: Awareness,
    limits: DocLimits,
    /// The document's encoded size when last measured, and what updates added since (an upper
    /// bound of its size now).
    measured: usize,
    added: usize,
    /// Which member each awareness client belongs to (its states go when the member leaves).
    owner: HashMap<ClientID, SessionId>,
    /// Members that have sent awareness (a member's first message names its own client).
    speakers: std::collections::HashSet<SessionId>,
}

impl DocRoom {
    /// The factory to register (`RoomTypes::add(TYPE, DocRoom::make)`): an empty document.
    pub fn make(_: &mut Ctx, _: &Value) -> Result<Box<dyn RoomLogic>, Refusal> {
        Ok(Box::new(Self::new(DocLimits::default())))
    }

    pub fn new(limits: DocLimits) -> Self {
        Self {
            awareness: Awareness::new(Doc::new()),
            limits,
            measured: 0,
            added: 0,
            owner: HashMap::new(),
            speakers: std::collections::HashSet::new(),
        }
    }

    /// The document's whole state, as one update.
    pub fn state(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// The awareness of whoever is there, as a message, if anyone has any.
    fn awareness_message(&self) -> Option<Value> {
        let update = self.awareness.update().ok()?;
        (!update.clients.is_empty()).then(|| Value::Binary(Message::Awareness(update).encode_v1()))
    }

    /// Applies `bytes` (an encoded update) if the document stays within its bound, and sends
    /// it on to the other members.
    fn update(&mut self, ctx: &mut Ctx, from: SessionId, bytes: Vec<u8>) -> Result<(), Refusal> {
        let update = Update::decode_v1(&bytes)
            .map_err(|err| Refusal::new("invalid_update", format!("not a Yjs update: {err}")))?;
        if self.measured + self.added + bytes.len() > self.limits.max_document_bytes {
            self.measured = self.state().len();
            self.added = 0;
            if self.measured + bytes.len() > self.limits.max_document_bytes {
                return Err(Refusal::new(
                    "document_too_large",
                    format!(
                        "the document would pass {} bytes",
                        self.limits.max_document_bytes
                    ),
                ));
            }
        }
        self.awareness
            .doc()
            .transact_mut()
            .apply_update(update)
            .map_err(|err| Refusal::new("invalid_update", format!("cannot apply it: {err}")))?;
        self.added += bytes.len();
        let relay = Message::Sync(SyncMessage::Update(bytes));
        ctx.broadcast_except(from, EVENT, Value::Binary(relay.encode_v1()));
        Ok(())
    }

    fn awareness_update(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        mut update: AwarenessUpdate,
    ) -> Result<(), Refusal> {
        // Each awareness client belongs to the member that first spoke for it (a provider's
        // first awareness message is its own state alone). What a member sends about others'
        // clients is an echo (y-websocket sends on every change it hears) and is dropped, or
        // echoes would circle forever. A provider back on a new connection speaks first for
        // its client again: the client moves to it, and if it speaks with its old clock,
        // which everyone would take for stale, the room moves the clock on.
        // A member speaks for at most MAX_CLIENTS_PER_MEMBER clients and a document holds at
        // most MAX_CLIENTS: past them, new clients are not taken.
        let first = self.speakers.insert(from);
        let alone = update.clients.len() == 1;
        let mut mine = self.owner.values().filter(|s| **s == from).count();
        let owner = &mut self.owner;
        let awareness = &self.awareness;
        update.clients.retain(|id, entry| {
            let owned_by = owner.get(id).copied();
            if owned_by.is_some_and(|o| o != from) && !(first && alone) {
                return false;
            }
            if owned_by != Some(from) {
                let room_for_it = mine < MAX_CLIENTS_PER_MEMBER
                    && (owned_by.is_some() || owner.len() < MAX_CLIENTS);
                if !room_for_it {
                    return false;
                }
                owner.insert(*id, from);
                mine += 1;
            }
            match awareness.meta(*id) {
                Some((known, _)) if entry.clock <= known => {
                    if &*entry.json == "null" {
                        return false;
                    }
                    entry.clock = known + 1;
                    true
                }
                _ => true,
            }
        });
        if update.clients.is_empty() {
            return Ok(());
        }
        let relay = Message::Awareness(update.clone()).encode_v1();
        self.awareness
            .apply_update(update)
            .map_err(|err| Refusal::new("invalid_message", format!("bad awareness: {err}")))?;
        ctx.broadcast_except(from, EVENT, Value::Binary(relay));
        Ok(())
    }
}

/// A reader's update (as y-protocols has it, a read-only client's writes are dropped): one
/// that changes nothing (a step 2 with nothing the room lacks) is taken as it is; any other is
/// refused `read_only`, the document untouched.
fn read_only(update: &[u8]) -> Result<Reply, Refusal> {
    match Update::decode_v1(update) {
        Ok(update) if update.is_empty() => Ok(Reply::Ok),
        _ => Err(Refusal::new(
            "read_only",
            "your token lets you read this document, not change it",
        )),
    }
}

impl RoomLogic for DocRoom {
    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        if event != EVENT {
            return Err(Refusal::new(
                "invalid_message",
                format!("a document takes `{EVENT}` events (y-websocket messages)"),
            ));
        }
        let Value::Binary(bytes) = data else {
            return Err(Refusal::new(
                "invalid_message",
                "a `y` event's data is the message's bytes (a MessagePack bin)",
            ));
        };
        if bytes.len() > self.limits.max_update_bytes {
            return Err(Refusal::new(
                "update_too_large",
                format!(
                    "a message is at most {} bytes",
                    self.limits.max_update_bytes
                ),
            ));
        }
        let message = Message::decode_v1(&bytes).map_err(|err| {
            Refusal::new(
                "invalid_message",
                format!("not a y-websocket message: {err}"),
            )
        })?;
        match message {
            Message::Sync(SyncMessage::SyncStep1(remote)) => {
                let missing = self
                    .awareness
                    .doc()
                    .transact()
                    .encode_state_as_update_v1(&remote);
                let ours = self.awareness.doc().transact().state_vector();
                let mut answer = vec![
                    Value::Binary(Message::Sync(SyncMessage::SyncStep2(missing)).encode_v1()),
                    Value::Binary(Message::Sync(SyncMessage::SyncStep1(ours)).encode_v1()),
                ];
                answer.extend(self.awareness_message());
                return Ok(Reply::Data(Value::Array(answer)));
            }
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                if ctx.member(from).is_some_and(|p| p.read_only) {
                    return read_only(&update);
                }
                self.update(ctx, from, update)?;
            }
            Message::Awareness(update) => self.awareness_update(ctx, from, update)?,
            Message::AwarenessQuery => {
                let answer = self.awareness_message().into_iter().collect();
                return Ok(Reply::Data(Value::Array(answer)));
            }
            Message::Auth(_) | Message::Custom(..) => {
                return Err(Refusal::new(
                    "invalid_message",
                    "a document takes sync and awareness messages",
                ))
            }
        }
        Ok(Reply::Ok)
    }

    /// A member that leaves takes its awareness states with it (the others are told).
    fn left(&mut self, ctx: &mut Ctx, who: SessionId, _: LeaveReason) {
        self.speakers.remove(&who);
        let ids: Vec<ClientID> = self
            .owner
            .iter()
            .filter(|(_, s)| **s == who)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            self.awareness.remove_state(*id);
            self.owner.remove(id);
        }
        if let Ok(update) = self.awareness.update_with_clients(ids) {
            ctx.broadcast(EVENT, Value::Binary(Message::Awareness(update).encode_v1()));
        }
    }

    fn snapshot(&self) -> Option<Value> {
        Some(Value::Binary(self.state()))
    }

    fn restore(&mut self, _: &mut Ctx, snapshot: Value) -> Result<(), Refusal> {
        let Value::Binary(bytes) = snapshot else {
            return Err(Refusal::new(
                "bad_snapshot",
                "a document's snapshot is its bytes",
            ));
        };
        let update = Update::decode_v1(&bytes)
            .map_err(|err| Refusal::new("bad_snapshot", err.to_string()))?;
        self.awareness
            .doc()
            .transact_mut()
            .apply_update(update)
            .map_err(|err| Refusal::new("bad_snapshot", err.to_string()))?;
        self.measured = bytes.len();
        Ok(())
    }

    /// Every update the room took is one of its broadcasts (event `y`), so the room's log
    /// since a snapshot brings a document back to now: a cluster writes a big document whole
    /// only now and then, not with every edit.
    fn replays_broadcasts(&self) -> bool {
        true
    }

    fn replay(&mut self, event: &str, data: &Value) {
        let Value::Binary(bytes) = data else { return };
        if event != EVENT {
            return;
        }
        // Awareness is not replayed: it is news, and its clients say it again.
        if let Ok(Message::Sync(SyncMessage::Update(update))) = Message::decode_v1(bytes) {
            if let Ok(decoded) = Update::decode_v1(&update) {
                if self
                    .awareness
                    .doc()
                    .transact_mut()
                    .apply_update(decoded)
                    .is_ok()
                {
                    self.added += update.len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
