//! What a node asks of the cluster's store and what the store answers, typed: the engine
//! (sans-IO) makes `Op`s and takes `Reply`s; `redis_store` carries them out with the functions
//! of `store.lua`, the simulation (`sim`) in memory. Also what nodes tell each other through
//! their inboxes (`NodeMessage`), and how a room is listed in the index (`IndexEntry`).

use bytes::Bytes;
use parlor_protocol::{LeaveReason, RoomInfo, SessionId};
use serde::{Deserialize, Serialize};

use crate::registry::Listing;

/// A room to make when a claim finds none.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRoom {
    /// The checkpoint (MessagePack `RoomCheckpoint`) and state (MessagePack `Document`).
    pub checkpoint: Bytes,
    pub state: Bytes,
    /// The history epoch its offsets are counted in.
    pub epoch: String,
}

/// A home's changes to one room, written all or nothing if its lease still holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Commit {
    pub room: String,
    pub epoch: u64,
    /// The room's history epoch: its frames go out on this incarnation's channel.
    pub history: String,
    pub checkpoint: Option<Bytes>,
    /// The state and its version, when the version changed.
    pub state: Option<(Bytes, u64)>,
    pub add: Vec<SessionId>,
    pub remove: Vec<SessionId>,
    /// Frames (offset 0 as their last byte) and the member each skips.
    pub frames: Vec<(Bytes, Option<SessionId>)>,
    /// The room is gone: its keys are deleted (`frames` are not written).
    pub delete: bool,
    /// The room has logic (written with its checkpoint): members' emits go to its home.
    pub logic: bool,
    /// With the checkpoint, for a logic that replays its broadcasts: the offset its snapshot
    /// was taken at (a claim reads the log back from there).
    pub replay_from: Option<u64>,
}

/// One operation on the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Become the room's home (making it with `create` if it does not exist; `fresh`: only
    /// make it, never take an existing one).
    Claim {
        room: String,
        create: Option<NewRoom>,
        fresh: bool,
    },
    Renew {
        room: String,
        epoch: u64,
    },
    Release {
        room: String,
        epoch: u64,
    },
    Commit(Commit),
    /// An event straight into the room's log: a member's (if `member` is still one), or the
    /// backend's (`None`: if the room exists).
    Emit {
        room: String,
        member: Option<SessionId>,
        skip: Option<SessionId>,
        body: Bytes,
    },
    /// A room's checkpoint, state and next offset (the backend reads a room whole).
    ReadRoom {
        room: String,
    },
    /// The room's listing in the index (`None`: remove it).
    IndexPut {
        room: String,
        listing: Option<Bytes>,
        /// The change may give a matchmaker a seat it did not have (a new room, a freed
        /// seat, new metadata...): the index's version moves on, so that a matchmaker about
        /// to make a room because it found none picks again. Members coming in do not.
        opens: bool,
    },
    /// The index: every listing, or these rooms'.
    IndexRead {
        rooms: Option<Vec<String>>,
    },
    /// Lists a new room if the index is still at version `version`.
    IndexCreate {
        version: u64,
        room: String,
        listing: Bytes,
    },
    SessionPut {
        session: SessionId,
        token: String,
        user: Option<String>,
        add: Vec<String>,
        remove: Vec<String>,
    },
    TakeOver {
        session: SessionId,
        token: String,
        user: Option<String>,
    },
    /// The session's connection ended on `node` (`None`: this node); handed over for
    /// `orphan_for` ms (a shutdown), or gone.
    SessionEnd {
        session: SessionId,
        node: Option<String>,
        orphan_for: Option<u64>,
    },
    /// Sessions handed over at a shutdown whose grace is over (and forgets them).
    OrphansDue,
    /// Beats this node's heartbeat; answered with every node, as `Nodes` is.
    Beat,
    /// Every node, and whether its heartbeat is alive.
    Nodes,
    /// This node is home to `room` (`add`) or no longer (`!add`), in its set.
    NodeRoom {
        room: String,
        add: bool,
    },
    /// The rooms `node` was home to, taken out of its set (a dead node's, for the taking).
    TakeNodeRooms {
        node: String,
    },
    /// Which of `sessions` the room's member set still holds (answered as `Rooms`, their ids).
    StillMembers {
        room: String,
        sessions: Vec<SessionId>,
    },
    Publish {
        node: String,
        message: Bytes,
    },
    /// A room's frames from `from` up to `to` (exclusive; `None`: to the end).
    ReadLog {
        room: String,
        from: u64,
        to: Option<u64>,
    },
    /// A session's node and rooms.
    SessionRead {
        session: SessionId,
    },
}

/// A room's lease as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub home: String,
    pub epoch: u64,
    /// Whether the lease has run out (by the store's clock).
    pub expired: bool,
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq)]
pub enum Claimed {
    Created {
        epoch: u64,
        now_ms: u64,
    },
    /// Taken over (a lease that ran out, or this node's own from before): the room as its
    /// last checkpoint left it.
    TakenOver {
        epoch: u64,
        checkpoint: Bytes,
        state: Bytes,
        next: u64,
        /// The room's frames from its checkpoint's `logic_from` on, from its log.
        since: Vec<Bytes>,
    },
    Held(Lease),
    Exists,
    Absent,
}

/// One frame of a room's log or channel: its offset, the member it is not for, the frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomMessage {
    pub offset: u64,
    pub skip: Option<SessionId>,
    pub frame: Bytes,
}

/// The answer to one `Op`.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Claimed(Claimed),
    /// Renewed (`true`) or fenced off.
    Renewed(bool),
    /// The first offset the commit's frames got and the room's next offset; or fenced.
    Committed(Option<(Option<u64>, u64)>),
    /// The event's offset, or not a member (no such room, for the backend).
    Emitted(Option<u64>),
    /// The room has logic: the emit was not appended, and goes to the room's home.
    EmitToHome,
    /// A room's checkpoint, state and next offset, if it exists.
    Room(Option<(Bytes, Bytes, u64)>),
    /// How many nodes heard a publish (0: the receiver is gone); `None`: not known (a Redis
    /// Cluster counts only the subscribers of the node that ran the publish, though every
    /// node's hear it: a receiver's death is then learnt from its heartbeat).
    Published(Option<u64>),
    Index {
        version: u64,
        listings: Vec<(String, Bytes)>,
    },
    /// Listed, or the index changed first.
    IndexCreated(bool),
    /// Stored, or the session has moved to another node.
    SessionPut(bool),
    /// The session's old node and rooms, or refused.
    TakenOver(Option<(String, Vec<String>)>),
    /// The session's rooms, or it has moved on.
    SessionEnded(Option<Vec<String>>),
    Orphans(Vec<SessionId>),
    Nodes(Vec<(String, bool)>),
    Rooms(Vec<String>),
    /// Whether the room exists, its history epoch and next offset, and the frames read.
    Log {
        exists: bool,
        history: String,
        next: u64,
        messages: Vec<RoomMessage>,
    },
    /// A session's node ('' while handed over) and rooms, if it is known.
    Session(Option<(String, Vec<String>)>),
    Done,
}

/// A room as the index lists it: its public listing, whether it is private, when it was made
/// and where its home is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub info: RoomInfo,
    pub private: bool,
    pub created: u64,
    pub home: String,
}

impl IndexEntry {
    pub fn listing(&self) -> Listing {
        Listing {
            info: self.info.clone(),
            private: self.private,
        }
    }
}

/// A request a node hands to a room's home.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forwarded {
    pub from: String,
    pub rid: u64,
    pub session: SessionId,
    pub user: Option<String>,
    /// The session's token's rooms claim, as patterns (`None`: any room).
    pub claim: Option<Vec<String>>,
    /// Its read-only claim: rooms it may only read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reading: Vec<String>,
    /// The client frame, encoded.
    #[serde(with = "serde_bytes")]
    pub frame: Vec<u8>,
    /// Sent again after the room's home died without answering it: a join already made is
    /// answered with the room.
    #[serde(default)]
    pub recovering: bool,
}

/// Frames a home sends a session on another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForSession {
    pub session: SessionId,
    /// The request these answer, when they do.
    pub rid: Option<u64>,
    pub frames: Vec<serde_bytes::ByteBuf>,
    /// Rooms the session joined: the history epoch, and the offset its stream starts at.
    pub joined: Vec<(String, String, u64)>,
    /// Rooms the session left.
    pub left: Vec<String>,
}

/// What a node tells another through its inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum NodeMessage {
    /// A session's request for a room homed at the receiver.
    Request(Forwarded),
    /// Join room `room` if it still takes matchmaking for the filter in the frame (a
    /// `join_or_create`); a refusal comes back as `MatchRefused`, not to the client.
    Match {
        forwarded: Forwarded,
        room: String,
    },
    MatchRefused {
        session: SessionId,
        rid: u64,
    },
    /// The receiver is not (or no longer) the room's home: ask again.
    NotHome {
        session: SessionId,
        rid: u64,
        room: String,
    },
    Frames(ForSession),
    /// A member of `rooms` (homed at the receiver, as far as the sender knows) went away,
    /// with its seats held.
    Away {
        session: SessionId,
        rooms: Vec<String>,
        /// Handed over at its node's shutdown: resumable anywhere, whatever becomes of the node.
        #[serde(default)]
        handed_over: bool,
    },
    /// A member is back, on `node`; `snapshots`: rooms whose log did not reach back to where
    /// it was, which send it a `joined` whole.
    Back {
        session: SessionId,
        rooms: Vec<String>,
        node: String,
        snapshots: Vec<String>,
    },
    /// A member's session ended.
    Gone {
        session: SessionId,
        rooms: Vec<String>,
        reason: LeaveReason,
    },
    /// A `direct` frame for a session on the receiver.
    Direct {
        to: SessionId,
        #[serde(with = "serde_bytes")]
        frame: Vec<u8>,
    },
    /// The session was resumed on another node: the receiver lets its connection go.
    Moved {
        session: SessionId,
    },
    /// The backend removed the session: its node ends it (its homes are told) and closes its
    /// connection (4001).
    Kicked {
        session: SessionId,
    },
}

impl NodeMessage {
    pub fn encode(&self) -> Bytes {
        parlor_protocol::encode_value(self)
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        parlor_protocol::decode_value(bytes, 64).ok()
    }
}

/// Reads a room channel's message: frames, each `<offset>\n<skip session or nothing>\n<length>
/// \n<frame>`, one after the other. What cannot be read ends it (the frames before are kept: a
/// gap they leave is filled from the log).
pub fn parse_room_message(payload: &Bytes) -> Vec<RoomMessage> {
    let mut messages = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        match parse_one(payload, at) {
            Some((message, next)) => {
                messages.push(message);
                at = next;
            }
            None => break,
        }
    }
    messages
}

/// One frame of a channel message, from `at`; and where the next begins.
fn parse_one(payload: &Bytes, at: usize) -> Option<(RoomMessage, usize)> {
    let mut fields = [0usize; 3];
    let mut from = at;
    for field in &mut fields {
        *field = from + payload.get(from..)?.iter().position(|&b| b == b'\n')?;
        from = *field + 1;
    }
    let text = |a: usize, b: usize| std::str::from_utf8(&payload[a..b]).ok();
    let offset = text(at, fields[0])?.parse().ok()?;
    let skip = match text(fields[0] + 1, fields[1])? {
        "" => None,
        raw => Some(raw.parse().ok()?),
    };
    let length: usize = text(fields[1] + 1, fields[2])?.parse().ok()?;
    let end = from
        .checked_add(length)
        .filter(|&end| end <= payload.len())?;
    Some((
        RoomMessage {
            offset,
            skip,
            frame: payload.slice(from..end),
        },
        end,
    ))
}

/// The channel message for `frame` (as `parse_room_message` reads it), after `payload`.
#[cfg(any(test, feature = "script"))]
pub fn write_room_message(
    payload: &mut Vec<u8>,
    offset: u64,
    skip: Option<SessionId>,
    frame: &[u8],
) {
    let skip = skip.map(|s| s.to_string()).unwrap_or_default();
    payload.extend_from_slice(format!("{offset}\n{skip}\n{}\n", frame.len()).as_bytes());
    payload.extend_from_slice(frame);
}

/// Why a call has no answer, and whether Redis may have carried it out all the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not sent: nothing was done.
    #[error("Redis is unreachable")]
    Down,
    /// Not sent: nothing was done.
    #[error("too many commands are waiting for Redis")]
    Busy,
    /// Sent, and the connection failed before the answer came: it may have been carried out.
    #[error("Redis did not answer in time")]
    Unanswered,
    /// Answered with an error; a function that failed part way may have changed some keys.
    #[error("Redis refused the command: {0}")]
    Refused(String),
}

impl LinkError {
    /// Whether the command certainly had no effect.
    pub fn not_carried_out(&self) -> bool {
        matches!(self, Self::Down | Self::Busy)
    }
}

impl From<LinkError> for crate::registry::RequestError {
    /// A failed call that changes something: `unavailable` only when it certainly was not
    /// carried out, else `outcome_unknown`.
    fn from(err: LinkError) -> Self {
        if err.not_carried_out() {
            Self::Unavailable(err.to_string())
        } else {
            Self::OutcomeUnknown(err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_message_holds_frames_one_after_the_other() {
        let skip = SessionId::new_random();
        let mut payload = Vec::new();
        write_room_message(&mut payload, 7, None, b"a\nb");
        write_room_message(&mut payload, 8, Some(skip), b"");
        write_room_message(&mut payload, 9, None, b"\n\n");
        let messages = parse_room_message(&Bytes::from(payload.clone()));
        let read: Vec<_> = messages
            .iter()
            .map(|m| (m.offset, m.skip, m.frame.to_vec()))
            .collect();
        assert_eq!(
            read,
            [
                (7, None, b"a\nb".to_vec()),
                (8, Some(skip), Vec::new()),
                (9, None, b"\n\n".to_vec())
            ]
        );
        // A message cut short keeps the frames before the cut.
        payload.truncate(payload.len() - 1);
        assert_eq!(parse_room_message(&Bytes::from(payload)).len(), 2);
        assert!(parse_room_message(&Bytes::from_static(b"1\n\n9\nshort")).is_empty());
        assert!(parse_room_message(&Bytes::from_static(b"x\n\n0\n")).is_empty());
    }
}
