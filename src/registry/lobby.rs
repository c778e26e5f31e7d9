//! Lobby subscriptions: who watches the public rooms and through which filter, which rooms
//! changed since the last update, and the coalesced `lobby` frames a flush produces. One frame
//! is encoded per distinct filter and shared by every subscriber using it. The single-node
//! registry and a cluster node both use it; they differ only in where a room's `Listing` comes
//! from (its `Room`, or Redis).
//!
//! A flush carries at most `frame_bytes` of changes: the rest wait for the next flush, taken
//! in turn from where the last one stopped, so that no room waits for ever behind busier ones.
//! Whatever rooms change and however fast, a subscriber receives at most one frame of that
//! size per flush.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;
use parlor_protocol::{encode_server, encoded_len, LobbyFrame, RoomFilter, ServerFrame, SessionId};

use super::room::{Listing, Room};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Added,
    Changed,
    Removed,
}

struct Subscription {
    filter: RoomFilter,
    /// The filter's encoding: subscribers with equal keys share one frame.
    key: Bytes,
}

pub(crate) struct Lobby {
    subscribers: HashMap<SessionId, Subscription>,
    /// Rooms changed since the last flush, by name (sorted, so frames are deterministic).
    dirty: BTreeMap<String, Change>,
    /// Bytes of room listings (and names of removed rooms) one flush carries at most.
    frame_bytes: usize,
    /// The last room the previous flush carried: the next one starts after it.
    cursor: Option<String>,
}

/// What a change seen before (`older`) and one seen since (`newer`) amount to for a
/// subscriber who has heard of neither; `None` when they cancel out.
fn merged(older: Change, newer: Change) -> Option<Change> {
    match (older, newer) {
        // Created and gone before anyone heard: nothing happened.
        (Change::Added, Change::Removed) => None,
        (Change::Added, _) => Some(Change::Added),
        // Gone and created again: to a subscriber, changed.
        (Change::Removed, Change::Added | Change::Changed) => Some(Change::Changed),
        (Change::Changed, Change::Added) => Some(Change::Changed),
        (_, newer) => Some(newer),
    }
}

impl Lobby {
    pub(crate) fn new(frame_bytes: usize) -> Self {
        Self {
            subscribers: HashMap::new(),
            dirty: BTreeMap::new(),
            frame_bytes,
            cursor: None,
        }
    }

    fn note(&mut self, room: &str, change: Change) {
        if self.subscribers.is_empty() {
            return;
        }
        match self.dirty.get(room).copied() {
            None => {
                self.dirty.insert(room.to_owned(), change);
            }
            Some(older) => match merged(older, change) {
                Some(now) => {
                    self.dirty.insert(room.to_owned(), now);
                }
                None => {
                    self.dirty.remove(room);
                }
            },
        }
    }

    pub(crate) fn subscribe(&mut self, id: SessionId, filter: RoomFilter) {
        let key = filter.canonical_key();
        self.subscribers.insert(id, Subscription { filter, key });
    }

    pub(crate) fn unsubscribe(&mut self, id: SessionId) -> bool {
        self.subscribers.remove(&id).is_some()
    }

    pub(crate) fn is_subscribed(&self, id: SessionId) -> bool {
        self.subscribers.contains_key(&id)
    }

    /// Whether no change waits to be sent.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.dirty.is_empty()
    }

    pub(crate) fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    pub(crate) fn subscriber_ids(&self) -> impl Iterator<Item = &SessionId> {
        self.subscribers.keys()
    }

    pub(crate) fn added(&mut self, room: &str) {
        self.note(room, Change::Added);
    }

    pub(crate) fn changed(&mut self, room: &str) {
        self.note(room, Change::Changed);
    }

    pub(crate) fn removed(&mut self, room: &str) {
        self.note(room, Change::Removed);
    }

    /// The `lobby` frames describing the changes since the last flush (as many as one frame
    /// carries), one per distinct filter, each with the subscribers it goes to. Subscribers
    /// with nothing to hear get none.
    pub(crate) fn flush<O>(
        &mut self,
        rooms: &HashMap<String, Room<O>>,
    ) -> Vec<(Bytes, Vec<SessionId>)> {
        let changes = self.take_changes();
        self.frames(changes, |name| rooms.get(name).map(|r| r.listing(name)))
    }

    /// The rooms changed since the last call, forgotten here (`frames` gives back those it
    /// leaves for later).
    pub(crate) fn take_changes(&mut self) -> Changes {
        Changes(std::mem::take(&mut self.dirty))
    }

    /// The `lobby` frames for as many of `changes` as one frame carries, given how each
    /// changed room lists now (`None`: gone); the others are noted again for the next flush.
    pub(crate) fn frames(
        &mut self,
        changes: Changes,
        listing: impl Fn(&str) -> Option<Listing>,
    ) -> Vec<(Bytes, Vec<SessionId>)> {
        let mut changes = changes.0;
        let mut now: Vec<(String, Change, Option<Listing>)> = Vec::new();
        let mut bytes = 0;
        // In turn: the rooms after the last one carried, then from the start.
        let after = match &self.cursor {
            Some(cursor) => changes
                .range::<str, _>((Bound::Excluded(cursor.as_str()), Bound::Unbounded))
                .map(|(name, _)| name.clone())
                .chain(
                    changes
                        .range::<str, _>((Bound::Unbounded, Bound::Included(cursor.as_str())))
                        .map(|(name, _)| name.clone()),
                )
                .collect::<Vec<_>>(),
            None => changes.keys().cloned().collect(),
        };
        for name in after {
            let room = listing(&name);
            let cost = room
                .as_ref()
                .map_or(name.len() + 5, |room| encoded_len(&room.info));
            if !now.is_empty() && bytes + cost > self.frame_bytes {
                break;
            }
            bytes += cost;
            let Some(change) = changes.remove(&name) else {
                continue;
            };
            self.cursor = Some(name.clone());
            now.push((name, change, room));
        }
        // What did not fit waits, merged with what changed meanwhile.
        for (name, older) in changes {
            let newer = self.dirty.remove(&name);
            let change = match newer {
                Some(newer) => merged(older, newer),
                None => Some(older),
            };
            if let Some(change) = change {
                self.dirty.insert(name, change);
            }
        }
        if now.is_empty() {
            return Vec::new();
        }
        let mut groups: HashMap<&Bytes, (&RoomFilter, Vec<SessionId>)> = HashMap::new();
        for (id, sub) in &self.subscribers {
            groups
                .entry(&sub.key)
                .or_insert_with(|| (&sub.filter, Vec::new()))
                .1
                .push(*id);
        }
        let mut out = Vec::with_capacity(groups.len());
        for (filter, subscribers) in groups.into_values() {
            let mut frame = LobbyFrame::default();
            for (name, change, listing) in &now {
                match listing {
                    Some(room) if *change != Change::Removed && room.matches(filter) => {
                        match change {
                            Change::Added => frame.added.push(room.info.clone()),
                            _ => frame.changed.push(room.info.clone()),
                        }
                    }
                    // Created and not matching: this subscriber never heard of it.
                    Some(_) if *change == Change::Added => {}
                    // Gone, or no longer matching: either way the subscriber drops it.
                    _ => frame.removed.push(name.clone()),
                }
            }
            if frame.added.is_empty() && frame.changed.is_empty() && frame.removed.is_empty() {
                continue;
            }
            out.push((encode_server(&ServerFrame::Lobby(frame)), subscribers));
        }
        out
    }
}

/// Rooms changed since a lobby's last update, by name (sorted, so frames are deterministic).
#[derive(Debug)]
pub(crate) struct Changes(BTreeMap<String, Change>);

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}
