//! `LocalRooms`: the rooms a cluster node has members in, and which of its sessions get each
//! frame. Frames reach the node from Redis in offset order but may arrive twice (a catch-up
//! read overlapping the live channel) or with a gap (a subscription that started late, an
//! outage); each room hands every frame to its local members exactly once and in order, asks
//! for the missing range when it sees a gap, and keeps its recent frames so that a member who
//! joins with a snapshot taken a moment earlier still gets the frames since. A room is followed
//! in one incarnation (history epoch) at a time: frames and reads of another are ignored, and a
//! member joining a newer one starts it afresh. No I/O here.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use parlor_protocol::SessionId;

use super::store::RoomMessage;

/// Recent frames each local room keeps for members who join a moment behind the node.
pub const RECENT_FRAMES: usize = 256;
/// Frames a room holds behind a gap while the gap is read back; past this the gap is given up
/// (counted as lost) rather than hold more.
pub const MAX_AHEAD: usize = 4096;

/// The range of a room's frames to read from its stream: `from` up to, not including, `to`
/// (`None`: to the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub room: String,
    /// The incarnation the frames are read for.
    pub epoch: String,
    pub from: u64,
    pub to: Option<u64>,
}

struct LocalMember<O> {
    id: SessionId,
    /// How the member is reached: frames go straight to it, with no lookup per recipient.
    outlet: O,
    /// The first offset this member gets; earlier frames are in its snapshot or replay.
    from: u64,
}

struct LocalRoom<O> {
    /// The history epoch of the incarnation followed.
    epoch: String,
    members: Vec<LocalMember<O>>,
    /// The offset of the next frame to hand out.
    next: u64,
    /// Frames that arrived ahead of `next`, waiting for the gap before them to be filled.
    ahead: BTreeMap<u64, RoomMessage>,
    /// A fill is under way.
    filling: bool,
    recent: VecDeque<RoomMessage>,
}

impl<O> LocalRoom<O> {
    fn new(epoch: &str, next: u64) -> Self {
        Self {
            epoch: epoch.to_owned(),
            members: Vec::new(),
            next,
            ahead: BTreeMap::new(),
            filling: false,
            recent: VecDeque::new(),
        }
    }

    /// Hands out every frame that is next in line: member by member, each member's frames
    /// one after the other (in offset order), so that a session woken for the first of a
    /// joined call's frames finds the rest there too and writes them at once.
    fn drain(&mut self, deliver: &mut impl FnMut(SessionId, &O, &Bytes)) {
        let mut ready = Vec::new();
        while let Some(message) = self.ahead.remove(&self.next) {
            self.next += 1;
            ready.push(message);
        }
        for member in &self.members {
            for message in &ready {
                if member.from <= message.offset && Some(member.id) != message.skip {
                    deliver(member.id, &member.outlet, &message.frame);
                }
            }
        }
        for message in ready {
            if self.recent.len() == RECENT_FRAMES {
                self.recent.pop_front();
            }
            self.recent.push_back(message);
        }
    }

    /// The fill to ask for, if frames wait behind a gap and none is under way.
    fn gap(&mut self, room: &str) -> Option<Fill> {
        let (&first_ahead, _) = self.ahead.first_key_value()?;
        if self.filling {
            return None;
        }
        self.filling = true;
        Some(Fill {
            room: room.to_owned(),
            epoch: self.epoch.clone(),
            from: self.next,
            to: Some(first_ahead),
        })
    }
}

/// What adding a member did.
#[derive(Debug, PartialEq, Eq)]
pub struct Added {
    /// The room (this incarnation of it) is new on this node: subscribe to its channel, then
    /// read from `from`.
    pub subscribe: bool,
    /// The incarnation followed until now, whose channel to leave.
    pub unsubscribe: Option<String>,
    /// Frames from `from` the node had already handed out and no longer holds: lost to
    /// this member (counted).
    pub lost: u64,
}

pub struct LocalRooms<O> {
    rooms: HashMap<String, LocalRoom<O>>,
    /// Frames never delivered because Redis no longer held them.
    pub lost: u64,
}

impl<O> Default for LocalRooms<O> {
    fn default() -> Self {
        Self {
            rooms: HashMap::new(),
            lost: 0,
        }
    }
}

/// What a frame's delivery calls for each recipient: its id, its outlet, the frame.
pub trait Deliver<O>: FnMut(SessionId, &O, &Bytes) {}
impl<O, F: FnMut(SessionId, &O, &Bytes)> Deliver<O> for F {}

impl<O> LocalRooms<O> {
    /// Where room `room` is: the offset of its next frame, if it is here.
    #[cfg(test)]
    pub fn next_offset(&self, room: &str) -> Option<u64> {
        self.rooms.get(room).map(|r| r.next)
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Makes `id`, reached through `outlet`, a local member of `room` from offset `from` on
    /// (its snapshot's or replay's end). Frames from `from` that the node has already handed
    /// out go to it at once.
    pub fn add_member(
        &mut self,
        room: &str,
        epoch: &str,
        id: SessionId,
        outlet: O,
        from: u64,
        deliver: &mut impl Deliver<O>,
    ) -> Added {
        let mut added = Added {
            subscribe: false,
            unsubscribe: None,
            lost: 0,
        };
        if self.rooms.get(room).is_some_and(|r| r.epoch != epoch) {
            // A newer incarnation: the one followed is gone (its members hear `left`).
            if let Some(old) = self.rooms.remove(room) {
                added.unsubscribe = Some(old.epoch);
            }
        }
        let local = self.rooms.entry(room.to_owned()).or_insert_with(|| {
            added.subscribe = true;
            LocalRoom::new(epoch, from)
        });
        local.members.retain(|m| m.id != id);
        if from < local.next {
            let oldest = local.recent.front().map_or(local.next, |m| m.offset);
            if from < oldest {
                added.lost = oldest - from;
            }
            for message in &local.recent {
                if message.offset >= from && Some(id) != message.skip {
                    deliver(id, &outlet, &message.frame);
                }
            }
        }
        local.members.push(LocalMember {
            id,
            outlet,
            from: from.max(local.next),
        });
        self.lost += added.lost;
        added
    }

    /// Takes `id` out of `room`; when the room has no local member left, the node forgets it
    /// and unsubscribes from the incarnation returned.
    pub fn remove_member(&mut self, room: &str, id: SessionId) -> Option<String> {
        let local = self.rooms.get_mut(room)?;
        local.members.retain(|m| m.id != id);
        if local.members.is_empty() {
            return self.rooms.remove(room).map(|r| r.epoch);
        }
        None
    }

    /// The incarnation of `room` followed here, if any.
    pub fn epoch_of(&self, room: &str) -> Option<&str> {
        self.rooms.get(room).map(|r| r.epoch.as_str())
    }

    /// A frame from the room's channel. Returns the fill to ask for when it reveals a gap.
    #[cfg(test)]
    pub fn on_frame(
        &mut self,
        room: &str,
        epoch: &str,
        message: RoomMessage,
        deliver: &mut impl Deliver<O>,
    ) -> Option<Fill> {
        self.on_frames(room, epoch, [message], deliver)
    }

    /// The frames of one channel message (a call's, in offset order), handed out together.
    /// Returns the fill to ask for when they reveal a gap.
    pub fn on_frames(
        &mut self,
        room: &str,
        epoch: &str,
        messages: impl IntoIterator<Item = RoomMessage>,
        deliver: &mut impl Deliver<O>,
    ) -> Option<Fill> {
        let local = self.rooms.get_mut(room)?;
        if local.epoch != epoch {
            return None;
        }
        for message in messages {
            if message.offset < local.next {
                continue;
            }
            local.ahead.insert(message.offset, message);
            if local.ahead.len() > MAX_AHEAD {
                // The gap is given up: what waits behind it goes out.
                if let Some(&first) = local.ahead.keys().next() {
                    self.lost += first - local.next;
                    local.next = first;
                }
                local.drain(deliver);
            }
        }
        local.drain(deliver);
        local.gap(room)
    }

    /// What the stream answered to `fill`. Frames of the range asked for that it no longer
    /// holds are skipped and counted as lost; a gap that opened meanwhile gets a fill of its own
    /// (returned).
    pub fn on_fill(
        &mut self,
        fill: &Fill,
        epoch: &str,
        messages: Vec<RoomMessage>,
        deliver: &mut impl Deliver<O>,
    ) -> Option<Fill> {
        let local = self.rooms.get_mut(&fill.room)?;
        if local.epoch != fill.epoch {
            return None;
        }
        local.filling = false;
        if epoch != local.epoch {
            // The room was made again since: what was followed is gone (its members hear
            // `left`), and the other incarnation's frames are not theirs.
            return None;
        }
        let first_read = messages.first().map(|m| m.offset);
        for message in messages {
            if message.offset >= local.next {
                local.ahead.insert(message.offset, message);
            }
        }
        local.drain(deliver);
        // What is still missing of the range asked for is gone from the stream: skip to the
        // next frame held (or past the range), counting what was skipped.
        let end = match fill.to {
            Some(to) => to,
            None => first_read.unwrap_or(local.next),
        };
        while local.next < end {
            let resume_at = local
                .ahead
                .keys()
                .next()
                .map_or(end, |first| (*first).min(end));
            self.lost += resume_at - local.next;
            local.next = resume_at;
            local.drain(deliver);
        }
        local.gap(&fill.room)
    }

    /// The fill that catches room `room` up with everything its stream holds past what the
    /// node has handed out: after subscribing, and after an outage.
    pub fn catch_up(&mut self, room: &str) -> Option<Fill> {
        let local = self.rooms.get_mut(room)?;
        if local.filling {
            return None;
        }
        local.filling = true;
        Some(Fill {
            room: room.to_owned(),
            epoch: local.epoch.clone(),
            from: local.next,
            to: None,
        })
    }

    /// Every room, for catching up after an outage.
    pub fn catch_up_all(&mut self) -> Vec<Fill> {
        let names: Vec<String> = self.rooms.keys().cloned().collect();
        names.iter().filter_map(|r| self.catch_up(r)).collect()
    }

    /// A fill failed (Redis went away): it may be asked for again.
    pub fn fill_failed(&mut self, room: &str) {
        if let Some(local) = self.rooms.get_mut(room) {
            local.filling = false;
        }
    }
}

#[cfg(test)]
mod tests;
