//! What travels between a node and Redis: the messages on room channels and node inboxes, the
//! arguments the Lua functions in `parlor.lua` take, and their answers turned into protocol
//! types (`joined`, room listings, request errors). No I/O here.

use std::collections::BTreeMap;

use bytes::Bytes;
use parlor_protocol::{
    decode_value, encode_server, encode_value, Document, JoinedFrame, Metadata, Ref, RoomInfo,
    ServerFrame, SessionId, Value,
};
use redis::Value as Reply;

use crate::registry::{Listing, MemberDetail, RequestError, RoomDetail};

/// An answer from Redis that is not what `parlor.lua` gives: a bug, or another program's keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected answer from Redis: {0}")]
pub struct WireError(pub String);

fn bad(what: &str) -> WireError {
    WireError(what.to_owned())
}

/// One frame a room's channel carried: its offset, the member it is not for, and the frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomMessage {
    pub offset: u64,
    pub skip: Option<SessionId>,
    pub frame: Bytes,
}

/// Reads `<offset>\n<skip session or nothing>\n<frame>`.
pub fn parse_room_message(payload: &Bytes) -> Option<RoomMessage> {
    let first = payload.iter().position(|&b| b == b'\n')?;
    let second = first + 1 + payload[first + 1..].iter().position(|&b| b == b'\n')?;
    let offset = std::str::from_utf8(&payload[..first]).ok()?.parse().ok()?;
    let skip = parse_session(&payload[first + 1..second])?;
    Some(RoomMessage {
        offset,
        skip,
        frame: payload.slice(second + 1..),
    })
}

/// `Some(None)` for the empty string, `None` for something that is no session id.
fn parse_session(raw: &[u8]) -> Option<Option<SessionId>> {
    if raw.is_empty() {
        return Some(None);
    }
    std::str::from_utf8(raw).ok()?.parse().ok().map(Some)
}

/// A message to one node.
#[derive(Clone, Debug, PartialEq)]
pub enum InboxMessage {
    /// A `direct` frame for a session on this node.
    Direct { to: SessionId, frame: Bytes },
    /// The session was resumed on another node: this node lets it go.
    ResumedElsewhere(SessionId),
    /// The backend removed the session from every room: close its connection.
    Kicked(SessionId),
    /// The session was kicked out of one room by its owner.
    LeftRoom {
        session: SessionId,
        room: String,
        reason: parlor_protocol::LeaveReason,
    },
}

pub fn parse_inbox(payload: &Bytes) -> Option<InboxMessage> {
    let mut parts = payload.splitn(3, |&b| b == b'\n');
    let kind = parts.next()?;
    let session = parse_session(parts.next()?)??;
    let rest = parts.next();
    match (kind, rest) {
        (b"d", Some(frame)) => {
            let start = payload.len() - frame.len();
            Some(InboxMessage::Direct {
                to: session,
                frame: payload.slice(start..),
            })
        }
        (b"r", None) => Some(InboxMessage::ResumedElsewhere(session)),
        (b"k", None) => Some(InboxMessage::Kicked(session)),
        (b"l", Some(rest)) => {
            let text = std::str::from_utf8(rest).ok()?;
            let (room, reason) = text.rsplit_once('\n')?;
            let reason = serde_json::from_value(serde_json::Value::from(reason)).ok()?;
            Some(InboxMessage::LeftRoom {
                session,
                room: room.to_owned(),
                reason,
            })
        }
        _ => None,
    }
}

/// Encodes a room frame whose offset Redis assigns: with offset 0, which MessagePack writes as
/// the frame's last byte, for `parlor.lua` to replace.
pub fn with_offset_to_fill(frame: &ServerFrame) -> Bytes {
    let bytes = encode_server(frame);
    debug_assert_eq!(
        bytes.last(),
        Some(&0),
        "the offset is the frame's last field"
    );
    bytes
}

/// The arguments that describe a new room's rules to `parlor.lua`: max, private, password
/// (`=` before it, or empty), dispose, metadata, mode, epoch, empty state.
pub fn rules_args(rules: &crate::registry::RoomRules) -> Vec<Vec<u8>> {
    let mode = mode_of(&rules.metadata);
    vec![
        rules.max_members.to_string().into_bytes(),
        flag(rules.private),
        rules
            .password
            .as_ref()
            .map(|p| format!("={p}").into_bytes())
            .unwrap_or_default(),
        flag(rules.dispose_when_empty),
        encode_value(&rules.metadata).to_vec(),
        mode.into_bytes(),
        uuid::Uuid::new_v4().simple().to_string().into_bytes(),
        encode_value(&Document::new()).to_vec(),
    ]
}

/// Metadata as key, encoded value pairs: what matchmaking filters compare.
pub fn metadata_pairs(metadata: &Metadata) -> Vec<Vec<u8>> {
    metadata
        .iter()
        .flat_map(|(key, value)| [key.clone().into_bytes(), encode_value(value).to_vec()])
        .collect()
}

/// The `mode` metadata value when it is a string; what the matchmaking index is keyed by.
pub fn mode_of(metadata: &Metadata) -> String {
    metadata
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub fn flag(on: bool) -> Vec<u8> {
    if on { b"1" } else { b"0" }.to_vec()
}

/// What a room-changing function answered.
#[derive(Debug)]
pub enum Answer {
    /// Done; the rest of the answer, as the function gave it.
    Ok(Vec<Reply>),
    /// Refused, for a reason the client is told.
    Refused(RequestError),
    /// `parlor_state`: the state moved on; here it is now, with its version.
    Conflict { version: u64, state: Bytes },
    /// `parlor_state`: these writers are no longer members of the room.
    Gone(Vec<SessionId>),
}

/// Reads `{'ok', ...}`, `{'err', code, args...}`, `{'conflict', version, state}` or
/// `{'gone', session...}`.
pub fn answer(reply: Reply) -> Result<Answer, WireError> {
    let Reply::Array(mut items) = reply else {
        return Err(bad("not an array"));
    };
    if items.is_empty() {
        return Err(bad("an empty array"));
    }
    let rest = items.split_off(1);
    let kind = text(&items[0]).ok_or_else(|| bad("no answer kind"))?;
    match kind.as_str() {
        "ok" => Ok(Answer::Ok(rest)),
        "conflict" => Ok(Answer::Conflict {
            version: rest
                .first()
                .and_then(number)
                .ok_or_else(|| bad("version"))?,
            state: rest.get(1).and_then(bytes).ok_or_else(|| bad("state"))?,
        }),
        "err" => Ok(Answer::Refused(refusal(&rest)?)),
        "gone" => Ok(Answer::Gone(
            rest.iter().filter_map(|r| text(r)?.parse().ok()).collect(),
        )),
        other => Err(WireError(format!("answer kind {other:?}"))),
    }
}

fn refusal(args: &[Reply]) -> Result<RequestError, WireError> {
    let code = args
        .first()
        .and_then(text)
        .ok_or_else(|| bad("error code"))?;
    let arg = args.get(1).and_then(text).unwrap_or_default();
    let max = || args.get(2).and_then(number).unwrap_or(0) as usize;
    Ok(match code.as_str() {
        "already_joined" => RequestError::AlreadyJoined(arg),
        "room_limit" => RequestError::RoomLimit {
            max: arg.parse().unwrap_or(0),
        },
        "room_locked" => RequestError::RoomLocked(arg),
        "room_full" => RequestError::RoomFull {
            room: arg,
            max: max(),
        },
        "wrong_password" => RequestError::WrongPassword(arg),
        "room_exists" => RequestError::RoomExists(arg),
        "room_not_found" => RequestError::RoomNotFound(arg),
        "not_in_room" | "no_room" => RequestError::NotInRoom(arg),
        "not_owner" => RequestError::NotOwner(arg),
        "forbidden" => RequestError::Forbidden(arg),
        "unknown_session" => RequestError::UnknownSession(arg.parse().unwrap_or(SessionId::NIL)),
        "resume_failed" => RequestError::ResumeFailed(
            "no such session to resume: unknown, expired, or the token does not match",
        ),
        other => return Err(WireError(format!("error code {other:?}"))),
    })
}

/// A room as `parlor_snapshot` (and every join) answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub room: String,
    pub max_members: u32,
    pub locked: bool,
    pub locked_by_owner: bool,
    pub owner: Option<SessionId>,
    pub private: bool,
    pub metadata: Metadata,
    pub state: Document,
    pub version: u64,
    pub epoch: String,
    /// The offset of the room's next frame.
    pub offset: u64,
    /// Members in join order: id, user, away.
    pub members: Vec<(SessionId, Option<String>, bool)>,
}

impl Snapshot {
    /// Reads the rest of an `ok` answer: room, fields, then member id and record pairs.
    pub fn parse(rest: &[Reply]) -> Result<Self, WireError> {
        let room = rest.first().and_then(text).ok_or_else(|| bad("room"))?;
        let Some(Reply::Array(fields)) = rest.get(1) else {
            return Err(bad("room fields"));
        };
        let field = |i: usize| fields.get(i).ok_or_else(|| bad("a room field"));
        let num = |i: usize| field(i).and_then(|f| number(f).ok_or_else(|| bad("a number")));
        let max_members = num(0)?;
        let hand_locked = num(1)? == 1;
        let count = num(2)?;
        let owner = field(3)
            .map(text)?
            .and_then(|s| s.parse::<SessionId>().ok());
        let private = num(4)? == 1;
        let metadata = decode_value(&bytes(field(5)?).ok_or_else(|| bad("metadata"))?, 64)
            .map_err(|e| WireError(format!("metadata: {e}")))?;
        let state = decode_value(&bytes(field(6)?).ok_or_else(|| bad("state"))?, 64)
            .map_err(|e| WireError(format!("state: {e}")))?;
        let mut members: Vec<(u64, SessionId, Option<String>, bool)> = Vec::new();
        for pair in rest[2..].chunks(2) {
            let [id, record] = pair else {
                return Err(bad("a member without its record"));
            };
            let id: SessionId = text(id)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("member id"))?;
            let record = text(record).ok_or_else(|| bad("member record"))?;
            let mut parts = record.splitn(3, '|');
            let seq = parts.next().and_then(|s| s.parse().ok());
            let away = parts.next() == Some("1");
            let user = parts.next().filter(|u| !u.is_empty()).map(str::to_owned);
            members.push((seq.ok_or_else(|| bad("join order"))?, id, user, away));
        }
        members.sort_unstable_by_key(|m| m.0);
        Ok(Self {
            room,
            max_members: u32::try_from(max_members).unwrap_or(u32::MAX),
            locked: hand_locked || count >= max_members,
            locked_by_owner: hand_locked,
            owner,
            private,
            metadata,
            state,
            version: num(7)?,
            epoch: field(8).map(text)?.unwrap_or_default(),
            offset: num(9)?,
            members: members
                .into_iter()
                .map(|(_, id, user, away)| (id, user, away))
                .collect(),
        })
    }

    pub fn joined(&self, reference: Option<Ref>) -> JoinedFrame {
        JoinedFrame {
            reference,
            room: self.room.clone(),
            members: self.members.iter().map(|m| m.0).collect(),
            owner: self.owner,
            max_members: self.max_members,
            locked: self.locked,
            locked_by_owner: self.locked_by_owner,
            private: self.private,
            metadata: self.metadata.clone(),
            state: self.state.clone(),
            version: self.version,
            epoch: self.epoch.clone(),
            offset: self.offset,
            users: self
                .members
                .iter()
                .filter_map(|(id, user, _)| user.clone().map(|u| (*id, u)))
                .collect::<BTreeMap<_, _>>(),
            away: self.members.iter().filter(|m| m.2).map(|m| m.0).collect(),
        }
    }

    pub fn detail(self, password: bool) -> RoomDetail {
        RoomDetail {
            info: RoomInfo {
                room: self.room,
                members: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
                max_members: self.max_members,
                locked: self.locked,
                locked_by_owner: self.locked_by_owner,
                password,
                owner: self.owner,
                metadata: self.metadata,
            },
            private: self.private,
            members: self
                .members
                .into_iter()
                .map(|(session, user, away)| MemberDetail {
                    session,
                    user,
                    away,
                })
                .collect(),
            state: self.state,
            version: self.version,
            epoch: self.epoch,
            offset: self.offset,
        }
    }
}

/// Whether the snapshot's room has a password (field 10 of the fields).
pub fn snapshot_has_password(rest: &[Reply]) -> bool {
    matches!(rest.get(1), Some(Reply::Array(f)) if f.get(10).and_then(number) == Some(1))
}

/// The rooms as `parlor_rooms` lists them.
pub fn parse_rooms(reply: Reply) -> Result<Vec<Listing>, WireError> {
    let Reply::Array(rooms) = reply else {
        return Err(bad("rooms: not an array"));
    };
    rooms
        .iter()
        .map(|room| {
            let Reply::Array(f) = room else {
                return Err(bad("a room: not an array"));
            };
            let num = |i: usize| f.get(i).and_then(number).ok_or_else(|| bad("a number"));
            let members = num(1)?;
            let max_members = num(2)?;
            let metadata = f
                .get(7)
                .and_then(bytes)
                .and_then(|b| decode_value(&b, 64).ok())
                .ok_or_else(|| bad("metadata"))?;
            Ok(Listing {
                info: RoomInfo {
                    room: f.first().and_then(text).ok_or_else(|| bad("name"))?,
                    members: u32::try_from(members).unwrap_or(u32::MAX),
                    max_members: u32::try_from(max_members).unwrap_or(u32::MAX),
                    locked: num(3)? == 1 || members >= max_members,
                    locked_by_owner: num(3)? == 1,
                    password: num(6)? == 1,
                    owner: f.get(4).and_then(text).and_then(|s| s.parse().ok()),
                    metadata,
                },
                private: num(5)? == 1,
            })
        })
        .collect()
}

/// One entry of a room's stream (`XRANGE`): offset, the member it skipped, the frame.
pub fn parse_stream(reply: Reply) -> Result<Vec<RoomMessage>, WireError> {
    let Reply::Array(entries) = reply else {
        return Err(bad("stream: not an array"));
    };
    entries
        .into_iter()
        .map(|entry| {
            let Reply::Array(mut parts) = entry else {
                return Err(bad("stream entry"));
            };
            if parts.len() != 2 {
                return Err(bad("stream entry length"));
            }
            let Some(Reply::Array(fields)) = parts.pop() else {
                return Err(bad("stream fields"));
            };
            let id = parts.pop().as_ref().and_then(text).unwrap_or_default();
            let offset = id
                .strip_prefix("0-")
                .and_then(|s| s.parse::<u64>().ok())
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| WireError(format!("stream id {id:?}")))?;
            let mut frame = None;
            let mut skip = None;
            for pair in fields.chunks(2) {
                if let [name, value] = pair {
                    match text(name).as_deref() {
                        Some("f") => frame = bytes(value),
                        Some("s") => skip = bytes(value).and_then(|b| parse_session(&b)),
                        _ => {}
                    }
                }
            }
            Ok(RoomMessage {
                offset,
                skip: skip.ok_or_else(|| bad("stream skip"))?,
                frame: frame.ok_or_else(|| bad("stream frame"))?,
            })
        })
        .collect()
}

/// The stream id of the entry at `offset`.
pub fn stream_id(offset: u64) -> String {
    format!("0-{}", offset + 1)
}

pub fn bytes(reply: &Reply) -> Option<Bytes> {
    match reply {
        Reply::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        Reply::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        Reply::Int(n) => Some(Bytes::from(n.to_string())),
        _ => None,
    }
}

pub fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Reply::SimpleString(s) => Some(s.clone()),
        Reply::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An array of strings (a `ZRANGE`'s members).
pub fn texts(reply: &Reply) -> Option<Vec<String>> {
    match reply {
        Reply::Array(items) => items.iter().map(text).collect(),
        _ => None,
    }
}

pub fn number(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Int(n) => u64::try_from(*n).ok(),
        Reply::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Reply::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
