//! The store in Redis: each `Op` becomes one command (an `FCALL` of a `store.lua` function, with
//! its keys declared and its arguments one MessagePack map of named fields), and each reply
//! becomes a typed `Reply`. No I/O here: `link` sends the commands.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parlor_protocol::SessionId;
use redis::Value;
use serde::Serialize;

use super::keys::Keys;
use super::link::Command;
use super::store::{parse_room_message, Claimed, Lease, Op, Reply, RoomMessage};

/// What a node needs to turn its `Op`s into commands.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub keys: Keys,
    pub node: String,
    /// A lease's and a heartbeat's length.
    pub ttl_ms: u64,
    /// Frames a room's log keeps.
    pub history_frames: usize,
    /// Redis is a Redis Cluster.
    pub redis_cluster: bool,
    /// What the emits into each room share, made once per room.
    pub emit_targets: EmitTargets,
}

/// What every emit into one room shares: the keys of its call and the argument a joined call
/// sends once. Kept per room, so that an emit costs no formatting of keys.
#[derive(Clone, Debug)]
struct EmitTarget {
    keys: Arc<[String]>,
    common: Bytes,
}

/// The rooms whose emit targets are kept: at most `EMIT_TARGETS`, then they are made again.
#[derive(Clone, Debug, Default)]
pub struct EmitTargets(HashMap<String, EmitTarget>);

/// The most rooms `EmitTargets` keeps (about 1 KB each) before it starts over.
const EMIT_TARGETS: usize = 4096;

/// Which reply an op's command gives, to read it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Claimed,
    Renewed,
    Done,
    Committed,
    Emitted,
    Room,
    Index,
    IndexCreated,
    SessionPut,
    TakenOver,
    SessionEnded,
    Sessions,
    Nodes,
    Rooms,
    Published,
    /// A publish on a Redis Cluster, whose count of receivers says nothing.
    PublishedUncounted,
    /// The log's frames from `from` up to `to` (exclusive; `None`: to the end).
    Log {
        from: u64,
        to: Option<u64>,
    },
    Session,
}

fn fcall(name: &str, keys: &[&str], args: &impl Serialize) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(name).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    cmd.arg(lua_args(args));
    cmd
}

/// `args` as one MessagePack map for a function's `cmsgpack.unpack`, which reads no `bin`
/// type: bytes go as `str` (Lua strings hold any bytes).
pub fn lua_args(args: &impl Serialize) -> Vec<u8> {
    fn write(value: &rmpv::Value, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        match value {
            rmpv::Value::Binary(bytes) => {
                let _ = rmp::encode::write_str_len(out, bytes.len() as u32);
                out.extend_from_slice(bytes);
            }
            rmpv::Value::Array(items) => {
                let _ = rmp::encode::write_array_len(out, items.len() as u32);
                for item in items {
                    write(item, out);
                }
            }
            rmpv::Value::Map(pairs) => {
                let _ = rmp::encode::write_map_len(out, pairs.len() as u32);
                for (key, value) in pairs {
                    write(key, out);
                    write(value, out);
                }
            }
            other => {
                let _ = rmpv::encode::write_value(out, other);
            }
        }
    }
    // Plain structs of strings, numbers, bytes and lists: encoding and reading back the
    // encoding cannot fail.
    let named = rmp_serde::to_vec_named(args).unwrap_or_default();
    let value = rmpv::decode::read_value(&mut named.as_slice()).unwrap_or(rmpv::Value::Nil);
    let mut out = Vec::new();
    write(&value, &mut out);
    out
}

fn bin(bytes: &Bytes) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(bytes.to_vec())
}

fn ids(ids: &[SessionId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

#[derive(Serialize)]
struct NewRoomArgs {
    ck: serde_bytes::ByteBuf,
    state: serde_bytes::ByteBuf,
    hist: String,
}

#[derive(Serialize)]
struct ClaimArgs<'a> {
    node: &'a str,
    ttl: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    create: Option<NewRoomArgs>,
    fresh: bool,
}

#[derive(Serialize)]
struct LeaseArgs<'a> {
    node: &'a str,
    epoch: u64,
    ttl: u64,
}

#[derive(Serialize)]
struct FrameArgs {
    b: serde_bytes::ByteBuf,
    s: String,
}

#[derive(Serialize)]
struct CommitArgs<'a> {
    node: &'a str,
    epoch: u64,
    keep: usize,
    head: &'a str,
    history: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ck: Option<serde_bytes::ByteBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lo: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<serde_bytes::ByteBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    add: Vec<String>,
    remove: Vec<String>,
    frames: Vec<FrameArgs>,
    delete: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logic: bool,
}

/// An emit's own argument, `{member (if any), skip, body}`, written straight (as `lua_args`
/// would write it, bytes as `str`): this runs for every emit.
fn emit_arg(member: Option<SessionId>, skip: Option<SessionId>, body: &[u8]) -> Vec<u8> {
    fn str_of(out: &mut Vec<u8>, bytes: &[u8]) {
        // Writing into a Vec cannot fail; a frame is far below 4 GiB.
        let _ = rmp::encode::write_str_len(out, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(bytes);
    }
    // A session id as its text (`SessionId`'s Display), written in place.
    fn id_of(out: &mut Vec<u8>, id: Option<SessionId>) {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text: &[u8] = match id {
            Some(id) => id.as_uuid().hyphenated().encode_lower(&mut text).as_bytes(),
            None => b"",
        };
        str_of(out, text);
    }
    let mut out = Vec::with_capacity(body.len() + 100);
    let _ = rmp::encode::write_map_len(&mut out, if member.is_some() { 3 } else { 2 });
    if member.is_some() {
        str_of(&mut out, b"member");
        id_of(&mut out, member);
    }
    str_of(&mut out, b"skip");
    id_of(&mut out, skip);
    str_of(&mut out, b"body");
    str_of(&mut out, body);
    out
}

/// What every emit into one room shares (a joined call sends it once).
#[derive(Serialize)]
struct EmitCommonArgs<'a> {
    keep: usize,
    head: &'a str,
}

#[derive(Serialize)]
struct IndexPutArgs<'a> {
    room: &'a str,
    listing: serde_bytes::ByteBuf,
    opens: bool,
    lobby: &'a str,
}

#[derive(Serialize)]
struct IndexReadArgs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
}

#[derive(Serialize)]
struct IndexCreateArgs<'a> {
    ver: u64,
    room: &'a str,
    listing: serde_bytes::ByteBuf,
    lobby: &'a str,
}

#[derive(Serialize)]
struct SessionPutArgs<'a> {
    node: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    add: &'a [String],
    remove: &'a [String],
}

#[derive(Serialize)]
struct TakeOverArgs<'a> {
    node: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct SessionEndArgs<'a> {
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    orphan_for: Option<u64>,
}

#[derive(Serialize)]
struct OrphanArgs {
    session: String,
    ms: u64,
}

#[derive(Serialize)]
struct BeatArgs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    ttl: u64,
}

#[derive(Serialize)]
struct ReadLogArgs {
    from: u64,
    to: i64,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct StillMembersArgs {
    sessions: Vec<String>,
}

impl StoreConfig {
    /// The commands that carry out `op`: the one whose reply answers it, then any to send
    /// after it whose replies do not matter.
    pub fn commands(&mut self, op: &Op) -> (Command, Expect, Vec<redis::Cmd>) {
        if let Op::Emit {
            room,
            member,
            skip,
            body,
        } = op
        {
            // Joinable: the link runs a room's emits queued together as one call.
            let target = self.emit_target(room);
            let command = Command::Joinable {
                function: "parlor_emit",
                keys: target.keys,
                common: target.common,
                arg: emit_arg(*member, *skip, body),
            };
            return (command, Expect::Emitted, Vec::new());
        }
        match self.plain_commands(op) {
            Some((cmd, expect, after)) => (Command::Plain(cmd), expect, after),
            None => (
                Command::Plain(redis::Cmd::new()),
                Expect::Emitted,
                Vec::new(),
            ),
        }
    }

    fn emit_target(&mut self, room: &str) -> EmitTarget {
        if let Some(target) = self.emit_targets.0.get(room) {
            return target.clone();
        }
        if self.emit_targets.0.len() >= EMIT_TARGETS {
            self.emit_targets.0.clear();
        }
        let r = self.keys.room(room);
        let common = EmitCommonArgs {
            keep: self.history_frames,
            head: &r.channel(""),
        };
        let target = EmitTarget {
            common: Bytes::from(lua_args(&common)),
            keys: Arc::from(vec![r.room, r.members, r.log]),
        };
        self.emit_targets.0.insert(room.to_owned(), target.clone());
        target
    }

    /// The plain commands for `op` (`None` for a joinable one).
    fn plain_commands(&self, op: &Op) -> Option<(redis::Cmd, Expect, Vec<redis::Cmd>)> {
        let k = &self.keys;
        let node = self.node.as_str();
        let ttl = self.ttl_ms;
        let hist = self.history_frames;
        let room_keys = |room: &str| k.room(room);
        Some(match op {
            Op::Claim {
                room,
                create,
                fresh,
            } => {
                let r = room_keys(room);
                let args = ClaimArgs {
                    node,
                    ttl,
                    create: create.as_ref().map(|c| NewRoomArgs {
                        ck: bin(&c.checkpoint),
                        state: bin(&c.state),
                        hist: c.epoch.clone(),
                    }),
                    fresh: *fresh,
                };
                let cmd = fcall("parlor_claim", &[&r.room, &r.members, &r.log], &args);
                (cmd, Expect::Claimed, Vec::new())
            }
            Op::Renew { room, epoch } => {
                let r = room_keys(room);
                let args = LeaseArgs {
                    node,
                    epoch: *epoch,
                    ttl,
                };
                (
                    fcall("parlor_renew", &[&r.room], &args),
                    Expect::Renewed,
                    Vec::new(),
                )
            }
            Op::Release { room, epoch } => {
                let r = room_keys(room);
                let args = LeaseArgs {
                    node,
                    epoch: *epoch,
                    ttl,
                };
                (
                    fcall("parlor_release", &[&r.room], &args),
                    Expect::Done,
                    Vec::new(),
                )
            }
            Op::Commit(commit) => {
                let r = room_keys(&commit.room);
                let head = r.channel("");
                let args = CommitArgs {
                    node,
                    epoch: commit.epoch,
                    keep: hist,
                    head: &head,
                    history: &commit.history,
                    ck: commit.checkpoint.as_ref().map(bin),
                    lo: commit.replay_from,
                    state: commit.state.as_ref().map(|(s, _)| bin(s)),
                    version: commit.state.as_ref().map(|(_, v)| *v),
                    add: ids(&commit.add),
                    remove: ids(&commit.remove),
                    frames: commit
                        .frames
                        .iter()
                        .map(|(b, s)| FrameArgs {
                            b: bin(b),
                            s: s.map(|s| s.to_string()).unwrap_or_default(),
                        })
                        .collect(),
                    delete: commit.delete,
                    logic: commit.logic,
                };
                let cmd = fcall("parlor_commit", &[&r.room, &r.members, &r.log], &args);
                (cmd, Expect::Committed, Vec::new())
            }
            Op::Emit { .. } => return None,
            Op::ReadRoom { room } => {
                let r = room_keys(room);
                (
                    fcall("parlor_room_read", &[&r.room], &Empty {}),
                    Expect::Room,
                    Vec::new(),
                )
            }
            Op::IndexPut {
                room,
                listing,
                opens,
            } => {
                let args = IndexPutArgs {
                    room,
                    listing: listing.as_ref().map(bin).unwrap_or_default(),
                    opens: *opens,
                    lobby: &k.lobby(),
                };
                let cmd = fcall(
                    "parlor_index_put",
                    &[&k.index_rooms(), &k.index_version()],
                    &args,
                );
                (cmd, Expect::Done, Vec::new())
            }
            Op::IndexRead { rooms } => {
                let args = IndexReadArgs {
                    rooms: rooms.as_deref(),
                };
                let cmd = fcall(
                    "parlor_index_read",
                    &[&k.index_rooms(), &k.index_version()],
                    &args,
                );
                (cmd, Expect::Index, Vec::new())
            }
            Op::IndexCreate {
                version,
                room,
                listing,
            } => {
                let args = IndexCreateArgs {
                    ver: *version,
                    room,
                    listing: bin(listing),
                    lobby: &k.lobby(),
                };
                let cmd = fcall(
                    "parlor_index_create",
                    &[&k.index_rooms(), &k.index_version()],
                    &args,
                );
                (cmd, Expect::IndexCreated, Vec::new())
            }
            Op::SessionPut {
                session,
                token,
                user,
                add,
                remove,
            } => {
                let (record, rooms) = k.session(*session);
                let args = SessionPutArgs {
                    node,
                    token,
                    user: user.as_deref(),
                    add,
                    remove,
                };
                let cmd = fcall("parlor_session_put", &[&record, &rooms], &args);
                (cmd, Expect::SessionPut, Vec::new())
            }
            Op::TakeOver {
                session,
                token,
                user,
            } => {
                let (record, rooms) = k.session(*session);
                let args = TakeOverArgs {
                    node,
                    token,
                    user: user.as_deref(),
                };
                let cmd = fcall("parlor_take_over", &[&record, &rooms], &args);
                (cmd, Expect::TakenOver, Vec::new())
            }
            Op::SessionEnd {
                session,
                node: on,
                orphan_for,
            } => {
                let (record, rooms) = k.session(*session);
                let args = SessionEndArgs {
                    node: on.as_deref().unwrap_or(node),
                    orphan_for: *orphan_for,
                };
                let cmd = fcall("parlor_session_end", &[&record, &rooms], &args);
                let after = orphan_for
                    .map(|ms| {
                        let args = OrphanArgs {
                            session: session.to_string(),
                            ms,
                        };
                        fcall("parlor_orphan", &[&k.orphans()], &args)
                    })
                    .into_iter()
                    .collect();
                (cmd, Expect::SessionEnded, after)
            }
            Op::OrphansDue => {
                let cmd = fcall("parlor_orphans_due", &[&k.orphans()], &Empty {});
                (cmd, Expect::Sessions, Vec::new())
            }
            Op::Beat | Op::Nodes => {
                let args = BeatArgs {
                    node: matches!(op, Op::Beat).then_some(node),
                    ttl,
                };
                (
                    fcall("parlor_beat", &[&k.beats()], &args),
                    Expect::Nodes,
                    Vec::new(),
                )
            }
            Op::NodeRoom { room, add } => {
                let mut cmd = redis::cmd(if *add { "SADD" } else { "SREM" });
                cmd.arg(k.node_rooms(node)).arg(room);
                (cmd, Expect::Done, Vec::new())
            }
            Op::TakeNodeRooms { node: dead } => {
                let cmd = fcall("parlor_take_node_rooms", &[&k.node_rooms(dead)], &Empty {});
                (cmd, Expect::Rooms, Vec::new())
            }
            Op::StillMembers { room, sessions } => {
                let r = room_keys(room);
                let args = StillMembersArgs {
                    sessions: ids(sessions),
                };
                let cmd = fcall("parlor_still_members", &[&r.members], &args);
                (cmd, Expect::Rooms, Vec::new())
            }
            Op::Publish { node: to, message } => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(k.inbox(to)).arg(&message[..]);
                let expect = if self.redis_cluster {
                    Expect::PublishedUncounted
                } else {
                    Expect::Published
                };
                (cmd, expect, Vec::new())
            }
            Op::ReadLog { room, from, to } => {
                let r = room_keys(room);
                let args = ReadLogArgs {
                    from: *from,
                    to: to.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX)),
                };
                let cmd = fcall("parlor_read_log", &[&r.room, &r.members, &r.log], &args);
                let expect = Expect::Log {
                    from: *from,
                    to: *to,
                };
                (cmd, expect, Vec::new())
            }
            Op::SessionRead { session } => {
                let (record, rooms) = k.session(*session);
                let cmd = fcall("parlor_session_read", &[&record, &rooms], &Empty {});
                (cmd, Expect::Session, Vec::new())
            }
        })
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
#[error("an unexpected answer from Redis: {0}")]
pub struct Unreadable(String);

/// The frames from offset `from` up to `to` (exclusive; `None`: no end) that the log's
/// `entries` hold (in offset order, as XRANGE gives them); `None` if an entry cannot be read
/// or the frames kept leave a hole (a log is trimmed only from its start, so a hole means a
/// broken entry, never a replay with a frame missing).
fn frames_in(entries: &[Value], from: u64, to: Option<u64>) -> Option<Vec<RoomMessage>> {
    let mut frames: Vec<RoomMessage> = Vec::new();
    for entry in entries {
        for message in entry_frames(entry)? {
            if message.offset < from || to.is_some_and(|to| message.offset >= to) {
                continue;
            }
            if frames
                .last()
                .is_some_and(|last| last.offset + 1 != message.offset)
            {
                return None;
            }
            frames.push(message);
        }
    }
    Some(frames)
}

/// The frames of one log entry, `[id, [field, value, ...]]`: its field `m`, the channel message
/// of the call that appended it; or, as a build before one entry per call wrote it, one frame
/// in fields `f` and `s` (the skipped session or nothing) with its offset in the id
/// (`0-<offset + 1>`), so that a log kept in Redis survives the upgrade.
fn entry_frames(entry: &Value) -> Option<Vec<RoomMessage>> {
    let [id, fields] = array(entry)? else {
        return None;
    };
    let fields = array(fields)?;
    let field = |name: &str| {
        fields
            .chunks_exact(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .map(|pair| &pair[1])
    };
    if let Some(message) = field("m") {
        return Some(parse_room_message(&bytes(message)?));
    }
    let offset = text(id)?
        .strip_prefix("0-")?
        .parse::<u64>()
        .ok()?
        .checked_sub(1)?;
    let skip = match field("s").and_then(text).unwrap_or_default().as_str() {
        "" => None,
        raw => Some(raw.parse().ok()?),
    };
    Some(vec![RoomMessage {
        offset,
        skip,
        frame: bytes(field("f")?)?,
    }])
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::copy_from_slice(bytes)),
        Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(_) | Value::SimpleString(_) => text(value)?.parse().ok(),
        _ => None,
    }
}

fn signed(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(_) | Value::SimpleString(_) => text(value)?.parse().ok(),
        _ => None,
    }
}

fn array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) => Some(items),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

fn texts(values: &[Value]) -> Option<Vec<String>> {
    values.iter().map(text).collect()
}

/// Reads the reply to a command made by `commands`.
pub fn read(expect: Expect, value: &Value) -> Result<Reply, Unreadable> {
    let bad = || Unreadable(format!("{expect:?}: {value:?}"));
    let items = || array(value).ok_or_else(bad);
    let tag = |items: &[Value]| items.first().and_then(text).unwrap_or_default();
    let reply = match expect {
        Expect::Done => Reply::Done,
        Expect::Claimed => {
            let items = items()?;
            let claimed = match tag(items).as_str() {
                "created" => Claimed::Created {
                    epoch: items.get(1).and_then(number).ok_or_else(bad)?,
                    now_ms: items.get(2).and_then(number).ok_or_else(bad)?,
                },
                "claimed" => Claimed::TakenOver {
                    epoch: items.get(1).and_then(number).ok_or_else(bad)?,
                    checkpoint: items.get(2).and_then(bytes).ok_or_else(bad)?,
                    state: items.get(3).and_then(bytes).unwrap_or_default(),
                    next: items.get(4).and_then(number).unwrap_or(0),
                    since: {
                        let from = items.get(8).and_then(number).unwrap_or(0);
                        let entries = items.get(7).and_then(array).unwrap_or_default();
                        frames_in(entries, from, None)
                            .ok_or_else(bad)?
                            .into_iter()
                            .map(|message| message.frame)
                            .collect()
                    },
                },
                "held" => {
                    let until = items.get(3).and_then(number).unwrap_or(0);
                    let now = items.get(4).and_then(number).unwrap_or(0);
                    Claimed::Held(Lease {
                        home: items.get(1).and_then(text).ok_or_else(bad)?,
                        epoch: items.get(2).and_then(number).ok_or_else(bad)?,
                        expired: until < now,
                    })
                }
                "exists" => Claimed::Exists,
                "absent" => Claimed::Absent,
                _ => return Err(bad()),
            };
            Reply::Claimed(claimed)
        }
        Expect::Renewed => Reply::Renewed(tag(items()?) == "ok"),
        Expect::Committed => {
            let items = items()?;
            match tag(items).as_str() {
                "ok" => {
                    let first = items.get(1).and_then(signed).ok_or_else(bad)?;
                    let next = items.get(2).and_then(number).ok_or_else(bad)?;
                    Reply::Committed(Some((u64::try_from(first).ok(), next)))
                }
                "fenced" => Reply::Committed(None),
                _ => return Err(bad()),
            }
        }
        Expect::Emitted => {
            let items = items()?;
            match tag(items).as_str() {
                "ok" => Reply::Emitted(Some(items.get(1).and_then(number).ok_or_else(bad)?)),
                "not_member" => Reply::Emitted(None),
                "logic" => Reply::EmitToHome,
                _ => return Err(bad()),
            }
        }
        Expect::Room => {
            let items = items()?;
            if items.is_empty() {
                Reply::Room(None)
            } else {
                Reply::Room(Some((
                    items.first().and_then(bytes).ok_or_else(bad)?,
                    items.get(1).and_then(bytes).unwrap_or_default(),
                    items.get(2).and_then(number).unwrap_or(0),
                )))
            }
        }
        Expect::Index => {
            let items = items()?;
            let version = items.first().and_then(number).ok_or_else(bad)?;
            let listings = items[1..]
                .chunks(2)
                .map(|pair| Some((pair.first().and_then(text)?, pair.get(1).and_then(bytes)?)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
            Reply::Index { version, listings }
        }
        Expect::IndexCreated => Reply::IndexCreated(tag(items()?) == "ok"),
        Expect::SessionPut => Reply::SessionPut(tag(items()?) == "ok"),
        Expect::TakenOver => {
            let items = items()?;
            match tag(items).as_str() {
                "ok" => {
                    let old = items.get(1).and_then(text).unwrap_or_default();
                    let rooms = texts(&items[2.min(items.len())..]).ok_or_else(bad)?;
                    Reply::TakenOver(Some((old, rooms)))
                }
                _ => Reply::TakenOver(None),
            }
        }
        Expect::SessionEnded => {
            let items = items()?;
            match tag(items).as_str() {
                "ok" => {
                    let rooms = texts(&items[2.min(items.len())..]).ok_or_else(bad)?;
                    Reply::SessionEnded(Some(rooms))
                }
                _ => Reply::SessionEnded(None),
            }
        }
        Expect::Sessions => {
            let ids = texts(items()?)
                .ok_or_else(bad)?
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect();
            Reply::Orphans(ids)
        }
        Expect::Nodes => {
            let items = items()?;
            let nodes = items
                .chunks(2)
                .map(|pair| {
                    Some((
                        pair.first().and_then(text)?,
                        pair.get(1).and_then(number)? == 1,
                    ))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
            Reply::Nodes(nodes)
        }
        Expect::Rooms => Reply::Rooms(texts(items()?).ok_or_else(bad)?),
        Expect::Published => Reply::Published(Some(number(value).ok_or_else(bad)?)),
        Expect::PublishedUncounted => Reply::Published(None),
        Expect::Log { from, to } => {
            let items = items()?;
            let exists = items.first().and_then(text).ok_or_else(bad)? == "1";
            let history = items.get(1).and_then(text).unwrap_or_default();
            let next = items.get(2).and_then(number).ok_or_else(bad)?;
            let messages = frames_in(&items[3.min(items.len())..], from, to).ok_or_else(bad)?;
            Reply::Log {
                exists,
                history,
                next,
                messages,
            }
        }
        Expect::Session => {
            let items = items()?;
            if items.is_empty() {
                Reply::Session(None)
            } else {
                let all = texts(items).ok_or_else(bad)?;
                Reply::Session(Some((all[0].clone(), all[1..].to_vec())))
            }
        }
    };
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::store::write_room_message;

    /// A log entry as XRANGE gives it: `[id, ["m", message]]`, the message holding `frames`.
    fn entry(frames: &[(u64, &str)]) -> Value {
        let mut message = Vec::new();
        for (offset, frame) in frames {
            write_room_message(&mut message, *offset, None, frame.as_bytes());
        }
        let last = frames.last().map_or(0, |(offset, _)| offset + 1);
        Value::Array(vec![
            Value::BulkString(format!("0-{last}").into_bytes()),
            Value::Array(vec![
                Value::BulkString(b"m".to_vec()),
                Value::BulkString(message),
            ]),
        ])
    }

    /// An entry as a build before one entry per call wrote it (one frame in fields f and s,
    /// its offset in the id) reads as that frame, beside entries of today's layout.
    #[test]
    fn an_entry_of_the_earlier_layout_reads_as_its_frame() {
        let skipped = SessionId::new_random();
        let old = |offset: u64, skip: &str, frame: &str| {
            let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
            Value::Array(vec![
                text(&format!("0-{}", offset + 1)),
                Value::Array(vec![text("f"), text(frame), text("s"), text(skip)]),
            ])
        };
        let reply = Value::Array(vec![
            Value::BulkString(b"1".to_vec()),
            Value::BulkString(b"h".to_vec()),
            Value::Int(4),
            old(1, "", "a"),
            old(2, &skipped.to_string(), "b"),
            entry(&[(3, "c")]),
        ]);
        let Ok(Reply::Log { messages, .. }) = read(Expect::Log { from: 1, to: None }, &reply)
        else {
            panic!("not read");
        };
        let read: Vec<_> = messages
            .iter()
            .map(|m| (m.offset, m.skip, m.frame.clone()))
            .collect();
        assert_eq!(
            read,
            [
                (1, None, Bytes::from("a")),
                (2, Some(skipped), Bytes::from("b")),
                (3, None, Bytes::from("c")),
            ]
        );
    }

    /// The emit's argument, written by hand for speed, is the map `lua_args` writes.
    #[test]
    fn an_emits_argument_is_the_named_map_lua_args_writes() {
        #[derive(Serialize)]
        struct EmitArgs {
            #[serde(skip_serializing_if = "Option::is_none")]
            member: Option<String>,
            skip: String,
            body: serde_bytes::ByteBuf,
        }
        let member = SessionId::new_random();
        let skip = SessionId::new_random();
        let body = vec![0x81, 0xa1, b'x', 0, 200];
        for (member, skip) in [
            (Some(member), Some(skip)),
            (None, None),
            (Some(member), None),
        ] {
            let expected = lua_args(&EmitArgs {
                member: member.map(|m| m.to_string()),
                skip: skip.map(|s| s.to_string()).unwrap_or_default(),
                body: serde_bytes::ByteBuf::from(body.clone()),
            });
            assert_eq!(emit_arg(member, skip, &body), expected);
        }
    }

    /// A room's emits share their keys and common argument, made once.
    #[test]
    fn a_rooms_emits_share_keys_and_common_argument() {
        let mut store = StoreConfig {
            keys: Keys::new("p:"),
            node: "n".into(),
            ttl_ms: 1000,
            history_frames: 7,
            redis_cluster: false,
            emit_targets: EmitTargets::default(),
        };
        let emit = |room: &str| Op::Emit {
            room: room.into(),
            member: None,
            skip: None,
            body: Bytes::from_static(b"e\0"),
        };
        let targets = |store: &mut StoreConfig, room: &str| match store.commands(&emit(room)).0 {
            Command::Joinable { keys, common, .. } => (keys, common),
            Command::Plain(_) => panic!("an emit is joinable"),
        };
        let (keys, common) = targets(&mut store, "a");
        let r = Keys::new("p:").room("a");
        let head = r.channel("");
        assert_eq!(&keys[..], [r.room, r.members, r.log]);
        assert_eq!(
            common,
            lua_args(&EmitCommonArgs {
                keep: 7,
                head: &head
            })
        );
        let (again, _) = targets(&mut store, "a");
        assert!(Arc::ptr_eq(&keys, &again), "made once");
        let (other, _) = targets(&mut store, "b");
        assert_ne!(keys, other);
    }

    /// The log's entries hold a call's frames each: a read keeps those in its range only.
    #[test]
    fn a_log_read_keeps_the_frames_of_its_range_from_whole_entries() {
        let reply = Value::Array(vec![
            Value::BulkString(b"1".to_vec()),
            Value::BulkString(b"h".to_vec()),
            Value::Int(6),
            entry(&[(1, "a"), (2, "b"), (3, "c")]),
            entry(&[(4, "d"), (5, "e")]),
        ]);
        let offsets = |from, to| match read(Expect::Log { from, to }, &reply) {
            Ok(Reply::Log { messages, next, .. }) => {
                assert_eq!(next, 6);
                messages.iter().map(|m| m.offset).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(offsets(2, Some(5)), [2, 3, 4]);
        assert_eq!(offsets(3, None), [3, 4, 5]);
        assert_eq!(offsets(0, Some(1)), Vec::<u64>::new());
        // An entry cut short leaves a hole: the read fails rather than skip frames.
        let mut message = Vec::new();
        write_room_message(&mut message, 6, None, b"f");
        write_room_message(&mut message, 7, None, b"g");
        message.truncate(message.len() - 3);
        let Value::Array(mut items) = reply.clone() else {
            unreachable!()
        };
        items.push(Value::Array(vec![
            Value::BulkString(b"0-8".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"m".to_vec()),
                Value::BulkString(message),
            ]),
        ]));
        items.push(entry(&[(8, "h")]));
        assert!(read(Expect::Log { from: 1, to: None }, &Value::Array(items)).is_err());
    }

    /// A claim's `since` (what a replaying logic takes back) starts at the snapshot's offset,
    /// even inside an entry.
    #[test]
    fn a_claim_replays_from_the_snapshots_offset_inside_an_entry() {
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            text("claimed"),
            Value::Int(2),
            text("ck"),
            text("state"),
            Value::Int(6),
            Value::Int(0),
            text("h"),
            Value::Array(vec![entry(&[(3, "c"), (4, "d")]), entry(&[(5, "e")])]),
            text("4"),
        ]);
        let Ok(Reply::Claimed(Claimed::TakenOver { since, .. })) = read(Expect::Claimed, &reply)
        else {
            panic!("not taken over");
        };
        assert_eq!(since, [Bytes::from("d"), Bytes::from("e")]);
    }
}
