//! A simulated cluster, for the property tests and the `cluster` fuzz target: three nodes'
//! engines (the real `Engine`, sans-IO) over an in-memory store that answers every `Op` as the
//! functions of `store.lua` do, with its clock, its pub/sub and its logs. A script drives it:
//! sessions connect to nodes and send requests (the registry script's vocabulary), time
//! passes, nodes die, restart, or lose touch with the store for a while (what they send
//! waits, as in a hung connection), and each node's traffic to and from the store moves a step
//! at a time, so that arbitrary input reaches the races a real cluster has. After every step
//! `Sim::check` holds the cluster to its invariants:
//!
//! - one home per room: a node that may decide for a room (its lease valid by its clock) holds
//!   the store's current lease of it;
//! - no room over its seats, in the store and in every hosting registry (whose own invariants
//!   hold too);
//! - every frame a session gets from a room's log is the log's next one for it, byte for byte:
//!   offsets with no gap and no repeat, across failovers;
//! - every frame decodes.
//!
//! Built for tests and with the `script` feature only.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use parlor_protocol::{decode_server, LeaveReason, ServerFrame, SessionId};

use super::engine::{Engine, EngineConfig, Output};
use super::store::LinkError;
use super::store::{Claimed, Lease, Op, Reply, RoomMessage};
use crate::metrics::Metrics;
use crate::registry::script::{client_frame, small_limits, Request};
use crate::registry::{Close, Outlet, Overflow, Profile, RoomCheckpoint};

/// The nodes of the simulated cluster.
pub const NODES: usize = 3;
const TTL: Duration = Duration::from_millis(3000);

/// One step of a script.
#[derive(Debug, Clone)]
pub enum SimOp {
    /// A session connects to node `node`.
    Connect {
        node: u8,
        user: Option<u8>,
    },
    /// Session `who`'s connection ends.
    End {
        who: u8,
        reason: u8,
    },
    Request {
        who: u8,
        request: Request,
    },
    /// Node `node` carries `count` of its calls to the store (0: all).
    Send {
        node: u8,
        count: u8,
    },
    /// Node `node` takes in `count` of the replies and messages waiting for it (0: all).
    Receive {
        node: u8,
        count: u8,
    },
    /// Every node sends and receives until nothing is left to move.
    Settle,
    Advance {
        millis: u16,
    },
    /// Node `node` dies (SIGKILL): its connections end, what it had not sent is lost.
    Kill {
        node: u8,
    },
    /// A dead node starts again, afresh, under the same name.
    Restart {
        node: u8,
    },
    /// Node `node` loses touch with the store (its calls wait, nothing reaches it), or gets
    /// it back.
    Cut {
        node: u8,
        cut: bool,
    },
    /// Node `node`'s connections to the store fail (`down`: calls not sent fail, answers not
    /// taken in are lost, and so is everything published to it meanwhile), or come back.
    Outage {
        node: u8,
        down: bool,
    },
}

/// Scripts weighted toward what makes rooms busy (requests, traffic moving), with deaths,
/// restarts and cuts rare enough that rooms live long enough to move.
impl<'a> Arbitrary<'a> for SimOp {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let node =
            |u: &mut arbitrary::Unstructured<'a>| -> arbitrary::Result<u8> { u8::arbitrary(u) };
        Ok(match u8::arbitrary(u)? {
            0..=109 => SimOp::Request {
                who: u8::arbitrary(u)?,
                request: Request::arbitrary(u)?,
            },
            110..=149 => SimOp::Settle,
            150..=164 => SimOp::Send {
                node: node(u)?,
                count: u8::arbitrary(u)? % 4,
            },
            165..=179 => SimOp::Receive {
                node: node(u)?,
                count: u8::arbitrary(u)? % 4,
            },
            180..=204 => SimOp::Connect {
                node: node(u)?,
                user: Option::<u8>::arbitrary(u)?,
            },
            205..=224 => SimOp::Advance {
                millis: u16::arbitrary(u)? % 1500,
            },
            225..=234 => SimOp::End {
                who: u8::arbitrary(u)?,
                reason: u8::arbitrary(u)?,
            },
            235..=237 => SimOp::Kill { node: node(u)? },
            238..=243 => SimOp::Restart { node: node(u)? },
            244..=246 => SimOp::Cut {
                node: node(u)?,
                cut: true,
            },
            247..=250 => SimOp::Cut {
                node: node(u)?,
                cut: false,
            },
            251..=252 => SimOp::Outage {
                node: node(u)?,
                down: true,
            },
            253..=254 => SimOp::Outage {
                node: node(u)?,
                down: false,
            },
            _ => SimOp::Advance {
                millis: u16::arbitrary(u)?,
            },
        })
    }
}

/// What one session received.
#[derive(Default)]
struct Received {
    frames: Vec<Bytes>,
    /// How many of `frames` were checked.
    checked: usize,
    /// Per room: the history epoch and the next offset expected there, since its `joined`.
    expect: HashMap<String, (String, u64)>,
    closed: Option<Close>,
}

/// A session's outlet in the simulation: it keeps what it is given.
#[derive(Clone, Default)]
pub struct SimOutlet(Rc<RefCell<Received>>);

impl Outlet for SimOutlet {
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow> {
        self.0.borrow_mut().frames.push(frame);
        Ok(())
    }

    fn close(&self, why: Close) {
        self.0.borrow_mut().closed = Some(why);
    }
}

/// What reaches a node from the store.
enum Event {
    Reply(u64, Result<Reply, LinkError>),
    Inbox(Bytes),
    Room(String, String, Bytes),
    Subscribed(String, String),
    Lobby(String),
}

struct Node {
    name: String,
    engine: Option<Engine<SimOutlet>>,
    /// Calls made and not yet carried to the store.
    outbound: VecDeque<(u64, Op)>,
    inbound: VecDeque<Event>,
    cut: bool,
    /// Its connections to the store are down (`SimOp::Outage`).
    down: bool,
}

/// One frame of a room's log.
#[derive(Clone)]
struct Entry {
    offset: u64,
    skip: Option<SessionId>,
    frame: Bytes,
}

/// A room as the store holds it.
#[derive(Clone)]
struct StoredRoom {
    home: String,
    epoch: u64,
    until: u64,
    next: u64,
    checkpoint: Bytes,
    state: Bytes,
    members: BTreeSet<SessionId>,
    /// The history epoch its frames are logged under (the checkpoint's).
    history: String,
    /// A room with logic (emits go to its home).
    logic: bool,
    /// Where a replaying logic's snapshot was taken (`lo` in `store.lua`).
    replay_from: Option<u64>,
}

/// The in-memory store: what `store.lua` keeps, and every log ever written (by room and
/// history epoch), so that what a session received can be checked against it.
#[derive(Default)]
struct Store {
    rooms: BTreeMap<String, StoredRoom>,
    logs: HashMap<(String, String), Vec<Entry>>,
    index: BTreeMap<String, Bytes>,
    index_version: u64,
    /// Session records: node ('' handed over), token, user, rooms.
    sessions: HashMap<SessionId, (String, String, Option<String>, BTreeSet<String>)>,
    beats: BTreeMap<String, u64>,
    node_rooms: HashMap<String, BTreeSet<String>>,
    orphans: BTreeMap<SessionId, u64>,
    /// Who listens to which room incarnation's channel; who listens to the lobby.
    room_subscribers: HashMap<(String, String), BTreeSet<usize>>,
    lobby_subscribers: BTreeSet<usize>,
}

/// The simulated cluster.
pub struct Sim {
    nodes: Vec<Node>,
    store: Store,
    start: Instant,
    now: Instant,
    sessions: Vec<(SessionId, usize, SimOutlet)>,
    metrics: Arc<Metrics>,
    /// Publishes answer with no count of receivers, as on a Redis Cluster.
    uncounted_publishes: bool,
    /// Sessions whose connection ended (by `End`).
    ended: BTreeSet<SessionId>,
}

fn history_of(checkpoint: &[u8]) -> String {
    parlor_protocol::decode_value::<RoomCheckpoint>(checkpoint, 64)
        .map(|c| c.epoch)
        .unwrap_or_default()
}

/// A frame with offset 0 as its last byte, given its offset (what `append` does in Lua).
fn with_offset(body: &Bytes, offset: u64) -> Bytes {
    let mut frame = BytesMut::with_capacity(body.len() + 8);
    frame.put_slice(&body[..body.len().saturating_sub(1)]);
    let mut writer = frame.writer();
    let _ = rmp::encode::write_uint(&mut writer, offset);
    writer.into_inner().freeze()
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Self {
        Self::with_redis_cluster(false)
    }

    /// A cluster over a store that answers publishes as a Redis Cluster does (`true`: with no
    /// count of receivers) or as one Redis does.
    pub fn with_redis_cluster(uncounted_publishes: bool) -> Self {
        let now = Instant::now();
        let mut sim = Self {
            nodes: Vec::new(),
            store: Store::default(),
            start: now,
            now,
            sessions: Vec::new(),
            metrics: Arc::new(Metrics::new()),
            uncounted_publishes,
            ended: BTreeSet::new(),
        };
        for n in 0..NODES {
            sim.nodes.push(Node {
                name: ((b'a' + n as u8) as char).to_string(),
                engine: None,
                outbound: VecDeque::new(),
                inbound: VecDeque::new(),
                cut: false,
                down: false,
            });
            sim.start_node(n);
        }
        sim
    }

    fn limits() -> crate::registry::RegistryLimits {
        let mut limits = small_limits();
        // Every frame stays in its log, for the checks; sessions keep their seats a while.
        limits.history_frames = 1 << 20;
        limits.history_bytes = 1 << 30;
        limits.reconnect_grace = Duration::from_millis(2000);
        limits
    }

    fn start_node(&mut self, n: usize) {
        let engine = Engine::new(
            EngineConfig {
                types: crate::game::RoomTypes::new(),
                node: self.nodes[n].name.clone(),
                limits: Self::limits(),
                node_ttl: TTL,
                lobby_interval: Duration::from_millis(100),
                state_patch_interval: Duration::ZERO,
                logic_pool: false,
            },
            Arc::clone(&self.metrics),
            self.now,
        );
        let node = &mut self.nodes[n];
        node.engine = Some(engine);
        node.outbound.clear();
        node.inbound.clear();
        node.cut = false;
        node.down = false;
        if let Some(engine) = &mut node.engine {
            engine.on_link(true, self.now);
        }
        self.pump(n);
    }

    fn store_ms(&self) -> u64 {
        self.now.duration_since(self.start).as_millis() as u64 + 1_000_000
    }

    fn pick(&self, who: u8) -> Option<usize> {
        let n = self.sessions.len();
        (n > 0).then(|| usize::from(who) % n)
    }

    /// Runs one step, then checks everything; `Err` describes the first thing found wrong.
    pub fn step(&mut self, op: &SimOp) -> Result<(), String> {
        match op {
            SimOp::Connect { node, user } => {
                let n = usize::from(*node) % NODES;
                let id = SessionId::new_random();
                let outlet = SimOutlet::default();
                let profile = Profile {
                    resume_token: format!("token-{id}"),
                    user: user.map(|u| format!("user-{}", u % 3)),
                    rooms: None,
                    node: None,
                };
                if let Some(engine) = &mut self.nodes[n].engine {
                    engine.clock(self.now);
                    engine.connect(id, outlet.clone(), profile);
                    self.sessions.push((id, n, outlet));
                }
                self.pump(n);
            }
            SimOp::End { who, reason } => {
                if let Some(i) = self.pick(*who) {
                    let (id, n, _) = self.sessions[i].clone();
                    let reason =
                        [LeaveReason::Dropped, LeaveReason::Closed][usize::from(*reason) % 2];
                    self.ended.insert(id);
                    if let Some(engine) = &mut self.nodes[n].engine {
                        engine.clock(self.now);
                        engine.disconnect(id, id, reason);
                    }
                    self.pump(n);
                }
            }
            SimOp::Request { who, request } => {
                if let Some(i) = self.pick(*who) {
                    let (id, n, _) = self.sessions[i].clone();
                    let ids: Vec<SessionId> = self.sessions.iter().map(|s| s.0).collect();
                    let frame = client_frame(request, |k| ids[usize::from(k) % ids.len()]);
                    if let Some(engine) = &mut self.nodes[n].engine {
                        engine.clock(self.now);
                        engine.request(id, id, frame);
                    }
                    self.pump(n);
                }
            }
            SimOp::Send { node, count } => self.send(usize::from(*node) % NODES, *count),
            SimOp::Receive { node, count } => self.receive(usize::from(*node) % NODES, *count),
            SimOp::Settle => {
                self.settle();
                self.check()?;
                return self.check_views();
            }
            SimOp::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(*millis));
                for n in 0..NODES {
                    if self.nodes[n].cut {
                        continue;
                    }
                    if let Some(engine) = &mut self.nodes[n].engine {
                        engine.tick(self.now);
                    }
                    self.pump(n);
                }
            }
            SimOp::Kill { node } => self.kill(usize::from(*node) % NODES),
            SimOp::Restart { node } => {
                let n = usize::from(*node) % NODES;
                if self.nodes[n].engine.is_none() {
                    self.start_node(n);
                }
            }
            SimOp::Cut { node, cut } => {
                let n = usize::from(*node) % NODES;
                if self.nodes[n].engine.is_some() {
                    self.nodes[n].cut = *cut;
                }
            }
            SimOp::Outage { node, down } => self.outage(usize::from(*node) % NODES, *down),
        }
        self.check()
    }

    /// Carries out what node `n`'s engine asks for: calls wait in its outbound queue,
    /// subscriptions take effect at once, answers to asks are dropped.
    fn pump(&mut self, n: usize) {
        loop {
            let down = self.nodes[n].down;
            let Some(engine) = &mut self.nodes[n].engine else {
                return;
            };
            let Some(output) = engine.poll() else {
                return;
            };
            match output {
                Output::Call { token, .. } if down => {
                    engine.on_reply(token, Err(LinkError::Down));
                }
                Output::Call { token, op } => self.nodes[n].outbound.push_back((token, op)),
                Output::Subscribe { room, epoch } => {
                    self.store
                        .room_subscribers
                        .entry((room.clone(), epoch.clone()))
                        .or_default()
                        .insert(n);
                    // While down, the link subscribes when it is back (and says so then).
                    if !down {
                        self.nodes[n]
                            .inbound
                            .push_back(Event::Subscribed(room, epoch));
                    }
                }
                Output::Unsubscribe { room, epoch } => {
                    if let Some(subscribers) = self.store.room_subscribers.get_mut(&(room, epoch)) {
                        subscribers.remove(&n);
                    }
                }
                Output::Lobby(listen) => {
                    if listen {
                        self.store.lobby_subscribers.insert(n);
                    } else {
                        self.store.lobby_subscribers.remove(&n);
                    }
                }
                Output::Answer { .. } => {}
            }
        }
    }

    fn outage(&mut self, n: usize, down: bool) {
        let node = &mut self.nodes[n];
        if node.engine.is_none() || node.down == down {
            return;
        }
        node.down = down;
        let outbound = std::mem::take(&mut node.outbound);
        let inbound = std::mem::take(&mut node.inbound);
        let Some(engine) = &mut node.engine else {
            return;
        };
        engine.clock(self.now);
        if down {
            for (token, _) in outbound {
                engine.on_reply(token, Err(LinkError::Down));
            }
            for event in inbound {
                if let Event::Reply(token, _) = event {
                    engine.on_reply(token, Err(LinkError::Unanswered));
                }
            }
        }
        engine.on_link(!down, self.now);
        self.pump(n);
    }

    fn send(&mut self, n: usize, count: u8) {
        if self.nodes[n].cut {
            return;
        }
        let count = if count == 0 {
            usize::MAX
        } else {
            usize::from(count)
        };
        for _ in 0..count {
            let Some((token, op)) = self.nodes[n].outbound.pop_front() else {
                return;
            };
            let reply = self.apply(n, op);
            self.nodes[n]
                .inbound
                .push_back(Event::Reply(token, Ok(reply)));
        }
    }

    fn receive(&mut self, n: usize, count: u8) {
        if self.nodes[n].cut {
            return;
        }
        let count = if count == 0 {
            usize::MAX
        } else {
            usize::from(count)
        };
        for _ in 0..count {
            let Some(event) = self.nodes[n].inbound.pop_front() else {
                return;
            };
            let Some(engine) = &mut self.nodes[n].engine else {
                return;
            };
            engine.clock(self.now);
            match event {
                Event::Reply(token, reply) => engine.on_reply(token, reply),
                Event::Inbox(payload) => engine.on_inbox(&payload),
                Event::Room(room, epoch, payload) => engine.on_room_frame(&room, &epoch, &payload),
                Event::Subscribed(room, epoch) => engine.on_subscribed(&room, &epoch),
                Event::Lobby(room) => engine.on_lobby(&room),
            }
            self.pump(n);
        }
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            let busy = self
                .nodes
                .iter()
                .any(|node| !node.cut && (!node.outbound.is_empty() || !node.inbound.is_empty()));
            if !busy {
                return;
            }
            for n in 0..NODES {
                self.send(n, 0);
                self.receive(n, 0);
            }
        }
    }

    fn kill(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.engine.take().is_none() {
            return;
        }
        node.outbound.clear();
        node.inbound.clear();
        node.cut = false;
        node.down = false;
        for subscribers in self.store.room_subscribers.values_mut() {
            subscribers.remove(&n);
        }
        self.store.lobby_subscribers.remove(&n);
        // Its sessions' connections are gone: nothing more reaches them.
        self.sessions.retain(|(_, at, _)| *at != n);
    }

    // ---- the store ------------------------------------------------------------------------

    fn publish_inbox(&mut self, node: &str, message: Bytes) -> u64 {
        let Some(n) = self
            .nodes
            .iter()
            .position(|x| x.name == node && x.engine.is_some() && !x.down)
        else {
            return 0;
        };
        self.nodes[n].inbound.push_back(Event::Inbox(message));
        1
    }

    fn publish_lobby(&mut self, room: &str) {
        for n in self.store.lobby_subscribers.clone() {
            if self.nodes[n].down {
                continue;
            }
            self.nodes[n]
                .inbound
                .push_back(Event::Lobby(room.to_owned()));
        }
    }

    /// `append` in Lua: the frame's offset, its place in the log, its publish.
    fn append(&mut self, room: &str, body: &Bytes, skip: Option<SessionId>) -> u64 {
        let Some(stored) = self.store.rooms.get_mut(room) else {
            return 0;
        };
        let offset = stored.next;
        stored.next += 1;
        let frame = with_offset(body, offset);
        let channel = (room.to_owned(), stored.history.clone());
        self.store
            .logs
            .entry(channel.clone())
            .or_default()
            .push(Entry {
                offset,
                skip,
                frame: frame.clone(),
            });
        let mut payload = Vec::new();
        crate::cluster::store::write_room_message(&mut payload, offset, skip, &frame);
        let payload = Bytes::from(payload);
        for n in self
            .store
            .room_subscribers
            .get(&channel)
            .cloned()
            .unwrap_or_default()
        {
            if self.nodes[n].down {
                continue;
            }
            self.nodes[n].inbound.push_back(Event::Room(
                channel.0.clone(),
                channel.1.clone(),
                payload.clone(),
            ));
        }
        offset
    }

    fn holds(&self, room: &str, node: &str, epoch: u64) -> bool {
        self.store
            .rooms
            .get(room)
            .is_some_and(|r| r.home == node && r.epoch == epoch && r.until >= self.store_ms())
    }

    /// One op, as `store.lua` carries it out for node `n`.
    fn apply(&mut self, n: usize, op: Op) -> Reply {
        let node = self.nodes[n].name.clone();
        let now = self.store_ms();
        let ttl = TTL.as_millis() as u64;
        match op {
            Op::Claim {
                room,
                create,
                fresh,
            } => {
                let Some(stored) = self.store.rooms.get_mut(&room) else {
                    let Some(create) = create else {
                        return Reply::Claimed(Claimed::Absent);
                    };
                    self.store.rooms.insert(
                        room,
                        StoredRoom {
                            home: node,
                            epoch: 1,
                            until: now + ttl,
                            next: 0,
                            history: history_of(&create.checkpoint),
                            checkpoint: create.checkpoint,
                            state: create.state,
                            members: BTreeSet::new(),
                            logic: false,
                            replay_from: None,
                        },
                    );
                    return Reply::Claimed(Claimed::Created {
                        epoch: 1,
                        now_ms: now,
                    });
                };
                if fresh {
                    return Reply::Claimed(Claimed::Exists);
                }
                if stored.home != node && stored.until >= now {
                    return Reply::Claimed(Claimed::Held(Lease {
                        home: stored.home.clone(),
                        epoch: stored.epoch,
                        expired: false,
                    }));
                }
                stored.epoch += 1;
                stored.home = node;
                stored.until = now + ttl;
                let since = match stored.replay_from {
                    Some(from) => self
                        .store
                        .logs
                        .get(&(room.clone(), stored.history.clone()))
                        .map(|log| {
                            log.iter()
                                .filter(|e| e.offset >= from)
                                .map(|e| e.frame.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                Reply::Claimed(Claimed::TakenOver {
                    epoch: stored.epoch,
                    checkpoint: stored.checkpoint.clone(),
                    state: stored.state.clone(),
                    next: stored.next,
                    since,
                })
            }
            Op::Renew { room, epoch } => {
                if !self.holds(&room, &node, epoch) {
                    return Reply::Renewed(false);
                }
                if let Some(stored) = self.store.rooms.get_mut(&room) {
                    stored.until = now + ttl;
                }
                Reply::Renewed(true)
            }
            Op::Release { room, epoch } => {
                if let Some(stored) = self.store.rooms.get_mut(&room) {
                    if stored.home == node && stored.epoch == epoch {
                        stored.until = 0;
                    }
                }
                Reply::Done
            }
            Op::Commit(commit) => {
                if !self.holds(&commit.room, &node, commit.epoch) {
                    return Reply::Committed(None);
                }
                if commit.delete {
                    self.store.rooms.remove(&commit.room);
                    return Reply::Committed(Some((None, 0)));
                }
                if let Some(stored) = self.store.rooms.get_mut(&commit.room) {
                    if let Some(checkpoint) = commit.checkpoint {
                        stored.history = commit.history.clone();
                        stored.checkpoint = checkpoint;
                        stored.logic |= commit.logic;
                        stored.replay_from = commit.replay_from;
                    }
                    if let Some((state, _)) = commit.state {
                        stored.state = state;
                    }
                    for id in &commit.remove {
                        stored.members.remove(id);
                    }
                    stored.members.extend(commit.add.iter().copied());
                }
                let mut first = None;
                for (body, skip) in &commit.frames {
                    let offset = self.append(&commit.room, body, *skip);
                    first.get_or_insert(offset);
                }
                let next = self.store.rooms.get(&commit.room).map_or(0, |r| r.next);
                Reply::Committed(Some((first, next)))
            }
            Op::Emit {
                room,
                member,
                skip,
                body,
            } => {
                let allowed = self
                    .store
                    .rooms
                    .get(&room)
                    .is_some_and(|stored| match member {
                        Some(id) => stored.members.contains(&id),
                        None => true,
                    });
                if self.store.rooms.get(&room).is_some_and(|r| r.logic) {
                    return Reply::EmitToHome;
                }
                if !allowed {
                    return Reply::Emitted(None);
                }
                Reply::Emitted(Some(self.append(&room, &body, skip)))
            }
            Op::ReadRoom { room } => Reply::Room(
                self.store
                    .rooms
                    .get(&room)
                    .map(|r| (r.checkpoint.clone(), r.state.clone(), r.next)),
            ),
            Op::IndexPut {
                room,
                listing,
                opens,
            } => {
                let new = match listing {
                    Some(listing) => self.store.index.insert(room.clone(), listing).is_none(),
                    None => {
                        self.store.index.remove(&room);
                        false
                    }
                };
                if new || opens {
                    self.store.index_version += 1;
                }
                self.publish_lobby(&room);
                Reply::Done
            }
            Op::IndexRead { rooms } => {
                let listings = match rooms {
                    Some(rooms) => rooms
                        .into_iter()
                        .filter_map(|r| self.store.index.get(&r).map(|l| (r, l.clone())))
                        .collect(),
                    None => self
                        .store
                        .index
                        .iter()
                        .map(|(r, l)| (r.clone(), l.clone()))
                        .collect(),
                };
                Reply::Index {
                    version: self.store.index_version,
                    listings,
                }
            }
            Op::IndexCreate {
                version,
                room,
                listing,
            } => {
                if version != self.store.index_version {
                    return Reply::IndexCreated(false);
                }
                self.store.index.insert(room.clone(), listing);
                self.store.index_version += 1;
                self.publish_lobby(&room);
                Reply::IndexCreated(true)
            }
            Op::SessionPut {
                session,
                token,
                user,
                add,
                remove,
            } => {
                let record = self
                    .store
                    .sessions
                    .entry(session)
                    .or_insert_with(|| (node.clone(), token, user, BTreeSet::new()));
                if record.0 != node {
                    return Reply::SessionPut(false);
                }
                for room in remove {
                    record.3.remove(&room);
                }
                record.3.extend(add);
                if record.3.is_empty() {
                    self.store.sessions.remove(&session);
                }
                Reply::SessionPut(true)
            }
            Op::TakeOver {
                session,
                token,
                user,
            } => match self.store.sessions.get_mut(&session) {
                Some(record) if record.1 == token && record.2 == user => {
                    let old = std::mem::replace(&mut record.0, node);
                    self.store.orphans.remove(&session);
                    Reply::TakenOver(Some((old, record.3.iter().cloned().collect())))
                }
                _ => Reply::TakenOver(None),
            },
            Op::SessionEnd {
                session,
                node: on,
                orphan_for,
            } => {
                let on = on.unwrap_or(node);
                let Some(record) = self.store.sessions.get_mut(&session) else {
                    return Reply::SessionEnded(None);
                };
                if record.0 != on {
                    return Reply::SessionEnded(None);
                }
                let rooms = record.3.iter().cloned().collect();
                match orphan_for {
                    Some(ms) => {
                        record.0 = String::new();
                        self.store.orphans.insert(session, now + ms);
                    }
                    None => {
                        self.store.sessions.remove(&session);
                    }
                }
                Reply::SessionEnded(Some(rooms))
            }
            Op::OrphansDue => {
                let due: Vec<SessionId> = self
                    .store
                    .orphans
                    .iter()
                    .filter(|(_, until)| **until <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &due {
                    self.store.orphans.remove(id);
                }
                Reply::Orphans(due)
            }
            Op::Beat | Op::Nodes => {
                if matches!(op, Op::Beat) {
                    self.store.beats.insert(node, now + ttl);
                }
                Reply::Nodes(
                    self.store
                        .beats
                        .iter()
                        .map(|(name, until)| (name.clone(), *until >= now))
                        .collect(),
                )
            }
            Op::NodeRoom { room, add } => {
                let rooms = self.store.node_rooms.entry(node).or_default();
                if add {
                    rooms.insert(room);
                } else {
                    rooms.remove(&room);
                }
                Reply::Done
            }
            Op::StillMembers { room, sessions } => Reply::Rooms(
                sessions
                    .into_iter()
                    .filter(|s| {
                        self.store
                            .rooms
                            .get(&room)
                            .is_some_and(|r| r.members.contains(s))
                    })
                    .map(|s| s.to_string())
                    .collect(),
            ),
            Op::TakeNodeRooms { node: dead } => Reply::Rooms(
                self.store
                    .node_rooms
                    .remove(&dead)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
            Op::Publish { node: to, message } => {
                let heard = self.publish_inbox(&to, message);
                Reply::Published((!self.uncounted_publishes).then_some(heard))
            }
            Op::ReadLog { room, from, to } => {
                let Some(stored) = self.store.rooms.get(&room) else {
                    return Reply::Log {
                        exists: false,
                        history: String::new(),
                        next: 0,
                        messages: Vec::new(),
                    };
                };
                let to = to.unwrap_or(u64::MAX);
                let messages = self
                    .store
                    .logs
                    .get(&(room.clone(), stored.history.clone()))
                    .map(|log| {
                        log.iter()
                            .filter(|e| e.offset >= from && e.offset < to)
                            .map(|e| RoomMessage {
                                offset: e.offset,
                                skip: e.skip,
                                frame: e.frame.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Reply::Log {
                    exists: true,
                    history: stored.history.clone(),
                    next: stored.next,
                    messages,
                }
            }
            Op::SessionRead { session } => Reply::Session(
                self.store
                    .sessions
                    .get(&session)
                    .map(|r| (r.0.clone(), r.3.iter().cloned().collect())),
            ),
        }
    }

    // ---- the checks -----------------------------------------------------------------------

    /// The cluster's invariants (see the module docs).
    pub fn check(&mut self) -> Result<(), String> {
        let store_now = self.store_ms();
        for node in &self.nodes {
            let Some(engine) = &node.engine else {
                continue;
            };
            engine
                .check_host()
                .map_err(|e| format!("node {}: {e}", node.name))?;
            for (room, epoch, valid_until) in engine.leases() {
                if valid_until <= self.now {
                    continue;
                }
                let stored = self.store.rooms.get(&room);
                let holds = stored.is_some_and(|r| {
                    r.home == node.name && r.epoch == epoch && r.until >= store_now
                });
                if !holds {
                    return Err(format!(
                        "node {} decides for room {room:?} (epoch {epoch}) without its lease: \
                         the store has {:?}",
                        node.name,
                        stored.map(|r| (&r.home, r.epoch, r.until, store_now))
                    ));
                }
            }
        }
        for (name, room) in &self.store.rooms {
            let Ok(checkpoint) =
                parlor_protocol::decode_value::<RoomCheckpoint>(&room.checkpoint, 64)
            else {
                return Err(format!("room {name:?} has an unreadable checkpoint"));
            };
            if checkpoint.members.len() > checkpoint.max_members as usize {
                return Err(format!(
                    "room {name:?} has {} members of {} seats",
                    checkpoint.members.len(),
                    checkpoint.max_members
                ));
            }
            let listed: BTreeSet<SessionId> =
                checkpoint.members.iter().map(|m| m.session).collect();
            if listed != room.members {
                return Err(format!(
                    "room {name:?}: its members set is not its checkpoint's"
                ));
            }
        }
        for (id, _, outlet) in &self.sessions {
            let mut received = outlet.0.borrow_mut();
            check_received(*id, &mut received, &self.store.logs)?;
        }
        Ok(())
    }
}

/// Runs the script `bytes` describe (its first byte: whether the store answers publishes as a
/// Redis Cluster does, then the steps): the first failure, with the steps that led to it. The
/// property tests and the `cluster` fuzz target run this.
pub fn run_script(bytes: &[u8]) -> Result<(), String> {
    let mut input = arbitrary::Unstructured::new(bytes);
    let mut sim = Sim::with_redis_cluster(input.arbitrary().unwrap_or(false));
    let mut done = Vec::new();
    while !input.is_empty() {
        let Ok(op) = SimOp::arbitrary(&mut input) else {
            break;
        };
        done.push(op.clone());
        sim.step(&op)
            .map_err(|err| format!("{err}\nafter {done:#?}"))?;
    }
    Ok(())
}

impl Sim {
    /// Once nothing is in flight (no message, no request waiting for its home) and no node is
    /// cut off: every connected session is a member of exactly the rooms its frames say it is
    /// in (an answer never lies about a seat).
    fn check_views(&self) -> Result<(), String> {
        // A request still in flight may have seated its session: its answer will say.
        let in_flight = self.nodes.iter().any(|node| {
            node.engine
                .as_ref()
                .is_some_and(|e| e.requests_in_flight() > 0)
        });
        if in_flight || self.nodes.iter().any(|node| node.cut || node.down) {
            return Ok(());
        }
        for (id, _, outlet) in &self.sessions {
            if self.ended.contains(id) {
                continue;
            }
            let received = outlet.0.borrow();
            if received.closed.is_some() {
                continue;
            }
            let believed: BTreeSet<&str> = received.expect.keys().map(String::as_str).collect();
            let stored: BTreeSet<&str> = self
                .store
                .rooms
                .iter()
                .filter(|(_, room)| room.members.contains(id))
                .map(|(name, _)| name.as_str())
                .collect();
            if believed != stored {
                return Err(format!(
                    "session {id} was told it is in {believed:?}, and is a member of {stored:?}"
                ));
            }
        }
        Ok(())
    }
}

/// Checks the frames session `id` got since the last check: each decodes, and each room frame
/// is the next frame of the room's log that is for it.
fn check_received(
    id: SessionId,
    received: &mut Received,
    logs: &HashMap<(String, String), Vec<Entry>>,
) -> Result<(), String> {
    while received.checked < received.frames.len() {
        let bytes = received.frames[received.checked].clone();
        received.checked += 1;
        let frame = decode_server(&bytes, 64)
            .map_err(|e| format!("session {id}: a frame does not decode: {e:?}"))?;
        match &frame {
            ServerFrame::Joined(joined) => {
                received
                    .expect
                    .insert(joined.room.clone(), (joined.epoch.clone(), joined.offset));
                continue;
            }
            ServerFrame::Left { room, .. } => {
                received.expect.remove(room);
                continue;
            }
            _ => {}
        }
        let Some((room, offset)) = frame.room_offset() else {
            continue;
        };
        let Some((epoch, next)) = received.expect.get_mut(room) else {
            let history: Vec<String> = received.frames[..received.checked]
                .iter()
                .filter_map(|f| decode_server(f, 64).ok())
                .map(|f| format!("{f:?}").chars().take(140).collect())
                .collect();
            return Err(format!(
                "session {id}: a frame of {room:?}, a room it is not in: {frame:?}\n{history:#?}"
            ));
        };
        let log = logs
            .get(&(room.to_owned(), epoch.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let due = log.iter().find(|e| e.offset >= *next && e.skip != Some(id));
        match due {
            Some(entry) if entry.offset == offset && entry.frame == bytes => *next = offset + 1,
            Some(entry) => {
                return Err(format!(
                    "session {id} in {room:?}: got offset {offset}, the log's next for it is {} \
                     ({frame:?})",
                    entry.offset
                ))
            }
            None => {
                return Err(format!(
                    "session {id} in {room:?}: got offset {offset}, which the log does not hold"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(bytes: &[u8]) -> Result<(), String> {
        run_script(bytes)
    }

    fn join(room: u8) -> Request {
        Request::Join {
            room,
            password: None,
            create: true,
        }
    }

    /// Time passes in ticks, everything moving in between.
    fn wait(sim: &mut Sim, millis: u16) -> Result<(), String> {
        for _ in 0..millis / 100 {
            sim.step(&SimOp::Advance { millis: 100 })?;
            sim.step(&SimOp::Settle)?;
        }
        Ok(())
    }

    /// Found by the `cluster` fuzz target (its input, whose steps the failure prints): a
    /// session that went away with no room left at a room's home was kept there as an away
    /// session in no room.
    #[test]
    fn a_session_in_no_room_going_away_is_forgotten_at_its_homes() -> Result<(), String> {
        const INPUT: &[u8] = &[
            192, 192, 192, 192, 196, 204, 192, 64, 63, 46, 63, 146, 0, 0, 71, 25, 196, 61, 192,
            192, 192, 204, 192, 68, 63, 71, 63, 146, 96, 8, 0, 0, 25, 111, 102, 102, 79, 229, 0, 0,
            0, 0, 0, 0, 77, 77, 86, 232, 102, 97, 111, 102, 229, 0, 222, 196, 152, 192, 192, 204,
            192, 64, 43, 71, 25, 196, 81, 81, 81, 81, 61, 192, 192, 192, 204, 192, 154, 68, 63, 71,
            63, 146, 96, 8, 0, 0, 25, 43, 111, 102, 102, 77, 229, 0, 0, 0, 0, 0, 0, 77, 180, 169,
            23, 153, 97, 144, 153, 26, 116,
        ];
        run_script(INPUT)
    }

    #[test]
    fn a_dead_homes_room_goes_on_at_a_survivor() -> Result<(), String> {
        let mut sim = Sim::new();
        sim.step(&SimOp::Connect {
            node: 0,
            user: None,
        })?;
        sim.step(&SimOp::Request {
            who: 0,
            request: join(0),
        })?;
        sim.step(&SimOp::Settle)?;
        sim.step(&SimOp::Connect {
            node: 1,
            user: None,
        })?;
        sim.step(&SimOp::Connect {
            node: 2,
            user: None,
        })?;
        for who in [1, 2] {
            sim.step(&SimOp::Request {
                who,
                request: join(0),
            })?;
            sim.step(&SimOp::Settle)?;
        }
        let emit = |who| SimOp::Request {
            who,
            request: Request::Emit {
                room: 0,
                echo: true,
            },
        };
        sim.step(&emit(1))?;
        sim.step(&SimOp::Settle)?;
        assert_eq!(sim.store.rooms["a"].home, "a");
        sim.step(&SimOp::Kill { node: 0 })?;
        // The survivors are now sessions 0 (on b) and 1 (on c).
        sim.step(&emit(0))?;
        wait(&mut sim, 5000)?;
        assert_ne!(sim.store.rooms["a"].home, "a", "nobody took the room over");
        sim.step(&SimOp::Request {
            who: 1,
            request: Request::UpdateState {
                room: 0,
                key: 1,
                delete: false,
                if_version: None,
            },
        })?;
        sim.step(&emit(1))?;
        wait(&mut sim, 500)?;
        let room = &sim.store.rooms["a"];
        let checkpoint: RoomCheckpoint =
            parlor_protocol::decode_value(&room.checkpoint, 64).map_err(|e| e.to_string())?;
        assert_eq!(
            checkpoint.members.len(),
            2,
            "the survivors keep their seats"
        );
        assert_eq!(checkpoint.version, 1);
        // Each survivor got every frame of the room since it joined (checked step by step),
        // the three emits among them.
        for (_, _, outlet) in &sim.sessions {
            let events = outlet
                .0
                .borrow()
                .frames
                .iter()
                .filter(|f| matches!(decode_server(f, 64), Ok(ServerFrame::Event(_))))
                .count();
            assert_eq!(events, 3);
        }
        Ok(())
    }

    /// Found by the `cluster` fuzz target: a node cut off from the store (its calls hanging,
    /// its link never down) past `node_ttl` is taken for dead and its sessions leave their
    /// rooms; when its calls go through again it must find out, or its sessions believe
    /// they are still in rooms that dropped them (one created a room, was dropped with it,
    /// and was never told).
    #[test]
    fn a_node_cut_off_past_its_heartbeat_finds_its_sessions_dropped() {
        let script = [
            0x42, 0xc7, 0x37, 0x7b, 0x7b, 0x7b, 0xff, 0xc0, 0xe0, 0xc0, 0xc2, 0xc0, 0xc0, 0xde,
            0xc9, 0xd5, 0x4b, 0x7c, 0xb9, 0x98, 0x9b, 0x1d, 0xad, 0xe8, 0xe7, 0x2b, 0x25, 0xc0,
            0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0x37, 0x37, 0x37, 0x37, 0xc2, 0x35, 0x37, 0x36,
            0x30, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x3a, 0x73, 0x8b, 0xe8, 0x8b, 0xf5,
            0xff, 0xff, 0xff, 0x30, 0xf7, 0xff, 0x03, 0x03, 0x03, 0x73, 0xe8, 0x8b, 0xe8, 0x3a,
            0x73, 0xe8,
        ];
        if let Err(failure) = run_script(&script) {
            panic!("{failure}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_scripts_keep_the_cluster_invariants(
            bytes in prop::collection::vec(any::<u8>(), 0..4096)
        ) {
            if let Err(failure) = run(&bytes) {
                prop_assert!(false, "{}", failure);
            }
        }
    }
}
