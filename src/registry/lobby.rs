//! Lobby subscriptions: who watches the public rooms and through which filter, which rooms
//! changed since the last update, and the coalesced `lobby` frames a flush produces. One frame
//! is encoded per distinct filter and shared by every subscriber using it. The single-node
//! registry and a cluster node both use it; they differ only in where a room's `Listing` comes
//! from (its `Room`, or Redis).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parlor_protocol::{encode_server, LobbyFrame, RoomFilter, ServerFrame, SessionId};

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

#[derive(Default)]
pub(crate) struct Lobby {
    subscribers: HashMap<SessionId, Subscription>,
    /// Rooms changed since the last flush, by name (sorted, so frames are deterministic).
    dirty: BTreeMap<String, Change>,
}

impl Lobby {
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

    pub(crate) fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    pub(crate) fn subscriber_ids(&self) -> impl Iterator<Item = &SessionId> {
        self.subscribers.keys()
    }

    pub(crate) fn added(&mut self, room: &str) {
        if !self.subscribers.is_empty() {
            // A name removed and created again within one update is, to a subscriber, changed.
            let change = match self.dirty.get(room) {
                Some(Change::Removed) => Change::Changed,
                _ => Change::Added,
            };
            self.dirty.insert(room.to_owned(), change);
        }
    }

    pub(crate) fn changed(&mut self, room: &str) {
        if !self.subscribers.is_empty() {
            match self.dirty.get_mut(room) {
                Some(Change::Added | Change::Changed) => {}
                Some(change @ Change::Removed) => *change = Change::Changed,
                None => {
                    self.dirty.insert(room.to_owned(), Change::Changed);
                }
            }
        }
    }

    pub(crate) fn removed(&mut self, room: &str) {
        if !self.subscribers.is_empty() {
            // A room created and removed within one update was never seen: say nothing.
            if self.dirty.get(room) == Some(&Change::Added) {
                self.dirty.remove(room);
            } else {
                self.dirty.insert(room.to_owned(), Change::Removed);
            }
        }
    }

    /// The `lobby` frames describing every change since the last flush, one per distinct
    /// filter, each with the subscribers it goes to. Subscribers with nothing to hear get none.
    pub(crate) fn flush<O>(
        &mut self,
        rooms: &HashMap<String, Room<O>>,
    ) -> Vec<(Bytes, Vec<SessionId>)> {
        let changes = self.take_changes();
        self.frames(&changes, |name| rooms.get(name).map(|r| r.listing(name)))
    }

    /// The rooms changed since the last call, forgotten here.
    pub(crate) fn take_changes(&mut self) -> Changes {
        Changes(std::mem::take(&mut self.dirty))
    }

    /// The `lobby` frames for `changes`, given how each changed room lists now (`None`: gone).
    pub(crate) fn frames(
        &self,
        changes: &Changes,
        listing: impl Fn(&str) -> Option<Listing>,
    ) -> Vec<(Bytes, Vec<SessionId>)> {
        if changes.0.is_empty() {
            return Vec::new();
        }
        let now: Vec<(&String, Change, Option<Listing>)> = changes
            .0
            .iter()
            .map(|(name, change)| (name, *change, listing(name)))
            .collect();
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
                    _ => frame.removed.push((*name).clone()),
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
pub(crate) struct Changes(BTreeMap<String, Change>);

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}
