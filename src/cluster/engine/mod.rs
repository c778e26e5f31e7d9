//! `Engine`: everything a cluster node decides, with no I/O (the quinn-proto way). The actor
//! feeds it what happens (a session's request, a store reply, a message on a channel, time)
//! and carries out what it asks (`Output`: store calls, subscriptions, answers).
//!
//! A node plays two parts, each in its own file:
//! - `edge`: the sessions connected here. It routes each request to its room's home (or, for
//!   a member's plain emit, straight into the room's log), one home request at a time per
//!   session so a session's requests keep their order; it follows the rooms its sessions are
//!   in (`LocalRooms`) and keeps their away time, resume and lobby.
//! - `home`: the rooms this node is home to. Their rules run in a hosting `Registry`, the same
//!   code as a single node's; what it decides is committed to the store (fenced by the
//!   room's lease) before anyone hears of it. Leases are renewed, and a room whose home died
//!   is claimed and restored from its checkpoint.
//! - `find`: matchmaking, listings and the lobby over the store's index, and the backend's
//!   asks.

mod edge;
mod find;
mod home;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parlor_protocol::{
    encode_server, ClientFrame, ErrorFrame, LeaveReason, Ref, RoomFilter, RoomInfo, RoomOptions,
    ServerFrame, SessionId,
};

use super::fanout::LocalRooms;
use super::store::LinkError;
use super::store::{NodeMessage, Op, Reply};
use crate::engine::Unreachable;
use crate::metrics::Metrics;
use crate::registry::{
    Close, Listing, Lobby, Outlet, Overflow, Profile, Registry, RegistryLimits, RequestError,
    RoomDetail,
};

pub use self::edge::ResumeAsk;

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub node: String,
    pub limits: RegistryLimits,
    /// A node whose heartbeat is older than this is dead; a lease lasts this long unless its
    /// home renews it.
    pub node_ttl: Duration,
    pub lobby_interval: Duration,
    /// How often rooms homed here send the state patches they batch (zero: they do not batch).
    pub state_patch_interval: Duration,
    /// The room types (rooms with logic) rooms homed here may have.
    pub types: crate::game::RoomTypes,
    /// Whether the driver runs rooms' ticks on a pool (`take_logic_jobs`, `logic_done`);
    /// else they run in `advance_logic`.
    pub logic_pool: bool,
}

/// What the engine asks of its driver.
#[derive(Debug)]
pub enum Output {
    /// Carry out `op` and hand its reply back with `token` (`Engine::on_reply`).
    Call {
        token: u64,
        op: Op,
    },
    /// Listen to (or stop listening to) the channel of room `room`'s incarnation `epoch`.
    Subscribe {
        room: String,
        epoch: String,
    },
    Unsubscribe {
        room: String,
        epoch: String,
    },
    /// Listen to the lobby's channel, or stop.
    Lobby(bool),
    /// The answer to an ask (`Engine::resume`, the backend's and the HTTP side's).
    Answer {
        ticket: u64,
        answer: Asked,
    },
}

/// Answers to the asks the actor relays.
#[derive(Debug)]
pub enum Asked {
    Resumed(Option<SessionId>),
    Published(Result<Option<u64>, Unreachable>),
    Room(Result<Option<RoomDetail>, Unreachable>),
    AllRooms(Result<Vec<Listing>, Unreachable>),
    Listed(Result<Vec<RoomInfo>, Unreachable>),
    Kicked(Result<bool, Unreachable>),
    /// Everything the shutdown asked of the store is done (or failed).
    ShutDown,
}

/// How a hosting registry reaches a member, wherever it is connected: everything it sends
/// waits in the engine's sink until what caused it is committed.
#[derive(Clone)]
pub struct HomeOutlet {
    session: SessionId,
    node: Rc<str>,
    sink: Sink,
}

type Sink = Rc<RefCell<Vec<Sunk>>>;

/// Something a hosting registry sent one member.
#[derive(Debug)]
enum Sunk {
    Frame {
        session: SessionId,
        node: Rc<str>,
        frame: Bytes,
    },
    Close {
        session: SessionId,
        node: Rc<str>,
        why: Close,
    },
}

impl Outlet for HomeOutlet {
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow> {
        self.sink.borrow_mut().push(Sunk::Frame {
            session: self.session,
            node: Rc::clone(&self.node),
            frame,
        });
        Ok(())
    }

    fn close(&self, why: Close) {
        self.sink.borrow_mut().push(Sunk::Close {
            session: self.session,
            node: Rc::clone(&self.node),
            why,
        });
    }
}

/// What to do with a store call's reply.
#[derive(Debug)]
enum Then {
    /// Nothing (a beat, a session record, an index write).
    Nothing,
    /// A claim of `room` made to route request `rid`.
    ClaimFor {
        rid: u64,
        room: String,
    },
    /// A claim made to reach the home of `room` with `message`.
    ClaimForMessage {
        room: String,
        message: Box<NodeMessage>,
    },
    /// A claim of a dead node's room.
    TakeOver {
        room: String,
    },
    Commit {
        batch: u64,
        room: String,
    },
    Renewed {
        room: String,
        epoch: u64,
        sent: Instant,
    },
    Emitted {
        session: SessionId,
        reference: Option<Ref>,
        room: String,
        /// The event as encoded, should the room turn out to have logic (then it is read back
        /// and goes to the home): a reference, not a copy, on the path every emit takes.
        body: Bytes,
        echo: bool,
    },
    Direct {
        session: SessionId,
        reference: Option<Ref>,
        to: SessionId,
        /// The sender's rooms a `send` may go through, and the encoded `direct`.
        from_rooms: Vec<String>,
        frame: Bytes,
    },
    /// A message published to another node's inbox.
    Sent(Sending),
    Nodes,
    NodeRooms,
    /// Which of `sessions`, members of `room` here, the store still seats (after an outage).
    StillMembers {
        room: String,
        sessions: Vec<SessionId>,
    },
    Orphans,
    /// A session's record ended (`SessionEnd`): its rooms' homes hear it is gone.
    SessionGone {
        session: SessionId,
        reason: LeaveReason,
    },
    Fill(super::fanout::Fill),
    Find(find::Finding),
    Resume(edge::ResumeStep),
    Backend(find::BackendStep),
    ShutDown {
        ticket: u64,
    },
}

/// A message on its way to another node's inbox, kept until Redis has it.
#[derive(Debug, Clone)]
struct Sending {
    node: String,
    /// The room whose home it is for, if any: it goes to the room's new home if `node` is gone.
    room: Option<String>,
    /// The forwarded request it carries, if any.
    rid: Option<u64>,
    message: Bytes,
}

/// A request sent to a room's home, until its answer comes.
#[derive(Debug)]
struct Forward {
    session: SessionId,
    room: String,
    frame: ClientFrame,
    /// Where it went; `None` while its home is being found.
    home: Option<String>,
    attempts: u32,
    /// For a `join_or_create`: the room matchmaking picked, and what else it tried.
    matching: Option<find::Matching>,
    /// When it was made: a request no home answers in time is given up.
    since: Instant,
    /// Sent again after its home died unanswering (a join, which its next home answers with
    /// the room if the seat was made).
    recovering: bool,
}

/// The engine. See the module docs.
pub struct Engine<O: Outlet> {
    cfg: EngineConfig,
    node: Rc<str>,
    now: Instant,
    metrics: Arc<Metrics>,
    // ---- the edge: sessions connected here
    sessions: HashMap<SessionId, edge::Local<O>>,
    away: HashSet<SessionId>,
    fanout: LocalRooms<O>,
    lobby: Lobby,
    lobby_listening: bool,
    last_lobby_flush: Instant,
    last_patch_flush: Instant,
    // ---- the home: rooms this node is home to
    host: Registry<HomeOutlet>,
    sink: Sink,
    hosted: HashMap<String, home::Hosted>,
    batches: VecDeque<home::Batch>,
    next_batch: u64,
    // ---- routing
    /// Where each room's home was last seen.
    homes: HashMap<String, String>,
    forwards: HashMap<u64, Forward>,
    next_rid: u64,
    /// Nodes found dead and dealt with (until their heartbeat comes back).
    dead: HashSet<String>,
    /// Rooms this node's claims are under way for, and what else waits for each.
    claiming: HashMap<String, (Instant, Vec<Then>)>,
    /// Rooms of dead nodes whose leases had not run out yet: claimed again at the next tick.
    takeovers: BTreeSet<String>,
    /// Forwarded requests whose home was gone: routed again at the next tick.
    reroute: Vec<u64>,
    /// Messages for rooms whose home was gone: sent again at the next tick.
    resend: Vec<(String, NodeMessage)>,
    /// Messages for rooms' homes published with no count of receivers (a Redis Cluster), kept
    /// a while: if their node is found dead, they go again to the rooms' next homes.
    uncounted: VecDeque<(Instant, String, String, NodeMessage)>,
    /// Messages Redis did not take (it was away): sent again when it is back.
    unsent: Vec<Sending>,
    /// Rooms a matchmaker made here, waiting for the index to list them; messages for them wait.
    creating: HashMap<String, find::Creating>,
    /// Requests for rooms homed here whose logic is running a tick on the pool: served when it
    /// is back (`logic_done`). An edge sends one request per session at a time, so each
    /// session's order holds.
    waiting_for_logic: Vec<(super::store::Forwarded, Option<String>)>,
    /// Resumes under way, by ticket.
    resuming: HashMap<u64, edge::Resuming>,
    // ---- the store
    pending: HashMap<u64, Then>,
    next_token: u64,
    out: VecDeque<Output>,
    next_ticket: u64,
    up: bool,
    up_since: Option<Instant>,
    last_beat: Option<Instant>,
    /// When a heartbeat of this node's was last answered: one answered longer than `node_ttl`
    /// after the one before means the others may have taken this node for dead meanwhile.
    last_beat_answered: Option<Instant>,
    last_renew: Option<Instant>,
    closing: bool,
}

impl<O: Outlet> Engine<O> {
    pub fn new(cfg: EngineConfig, metrics: Arc<Metrics>, now: Instant) -> Self {
        let mut limits = cfg.limits.clone();
        // A home never expires a member: its node keeps the grace.
        limits.reconnect_grace = Duration::MAX;
        limits.max_away_sessions = usize::MAX;
        let lobby = Lobby::new(cfg.limits.lobby_frame_bytes);
        Self {
            node: Rc::from(cfg.node.as_str()),
            host: {
                let host =
                    Registry::host(limits, Arc::clone(&metrics)).with_room_types(cfg.types.clone());
                if cfg.logic_pool {
                    host.with_logic_pool()
                } else {
                    host
                }
            },
            cfg,
            now,
            metrics,
            sessions: HashMap::new(),
            away: HashSet::new(),
            fanout: LocalRooms::default(),
            lobby,
            lobby_listening: false,
            last_lobby_flush: now,
            last_patch_flush: now,
            sink: Rc::default(),
            hosted: HashMap::new(),
            batches: VecDeque::new(),
            next_batch: 0,
            homes: HashMap::new(),
            forwards: HashMap::new(),
            next_rid: 0,
            dead: HashSet::new(),
            takeovers: BTreeSet::new(),
            claiming: HashMap::new(),
            reroute: Vec::new(),
            resend: Vec::new(),
            uncounted: VecDeque::new(),
            unsent: Vec::new(),
            creating: HashMap::new(),
            waiting_for_logic: Vec::new(),
            resuming: HashMap::new(),
            pending: HashMap::new(),
            next_token: 0,
            out: VecDeque::new(),
            next_ticket: 0,
            up: false,
            up_since: None,
            last_beat: None,
            last_beat_answered: None,
            last_renew: None,
            closing: false,
        }
    }

    fn limits(&self) -> &RegistryLimits {
        &self.cfg.limits
    }

    /// Whether the node reaches the store.
    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn away_count(&self) -> usize {
        self.away.len()
    }

    /// The rooms this node has members in.
    pub fn local_room_count(&self) -> usize {
        self.fanout.len()
    }

    /// Sets the engine's clock (the driver calls it as things happen; `tick` does too).
    pub fn clock(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// What the engine asks next.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn call(&mut self, op: Op, then: Then) {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, then);
        self.out.push_back(Output::Call { token, op });
    }

    fn ticket(&mut self) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        ticket
    }

    fn answer(&mut self, ticket: u64, answer: Asked) {
        self.out.push_back(Output::Answer { ticket, answer });
    }

    /// The driver's reply to call `token`.
    pub fn on_reply(&mut self, token: u64, reply: Result<Reply, LinkError>) {
        let Some(then) = self.pending.remove(&token) else {
            return;
        };
        match then {
            Then::Nothing => {}
            Then::ClaimFor { rid, room } => {
                self.on_claim_for(rid, reply);
                self.claimed(&room);
            }
            Then::ClaimForMessage { room, message } => {
                self.on_claim_for_message(room.clone(), *message, reply);
                self.claimed(&room);
            }
            Then::TakeOver { room } => {
                self.on_take_over(room.clone(), reply);
                self.claimed(&room);
            }
            Then::Commit { batch, room } => self.on_commit(batch, room, reply),
            Then::Renewed { room, epoch, sent } => self.on_renewed(room, epoch, sent, reply),
            Then::Emitted {
                session,
                reference,
                room,
                body,
                echo,
            } => self.on_emitted(session, reference, room, (body, echo), reply),
            Then::Direct {
                session,
                reference,
                to,
                from_rooms,
                frame,
            } => self.on_direct(session, reference, (to, from_rooms, frame), reply),
            Then::Sent(sending) => self.on_sent(sending, reply),
            Then::Nodes => self.on_nodes(reply),
            Then::NodeRooms => self.on_node_rooms(reply),
            Then::StillMembers { room, sessions } => self.on_still_members(room, sessions, reply),
            Then::Orphans => self.on_orphans(reply),
            Then::SessionGone { session, reason } => self.on_session_gone(session, reason, reply),
            Then::Fill(fill) => self.on_fill(fill, reply),
            Then::Find(finding) => self.on_find(finding, reply),
            Then::Resume(step) => self.on_resume_step(step, reply),
            Then::Backend(step) => self.on_backend_step(step, reply),
            Then::ShutDown { ticket } => self.answer(ticket, Asked::ShutDown),
        }
    }

    /// A message on this node's inbox.
    pub fn on_inbox(&mut self, payload: &[u8]) {
        let Some(message) = NodeMessage::decode(payload) else {
            tracing::warn!("cluster: an unreadable inbox message");
            return;
        };
        self.on_message(message);
    }

    fn on_message(&mut self, message: NodeMessage) {
        match message {
            NodeMessage::Request(forwarded) => self.on_forwarded(forwarded, None),
            NodeMessage::Match { forwarded, room } => self.on_forwarded(forwarded, Some(room)),
            NodeMessage::MatchRefused { session, rid } => self.on_match_refused(session, rid),
            NodeMessage::NotHome { session, rid, room } => self.on_not_home(session, rid, room),
            NodeMessage::Frames(for_session) => self.on_frames(for_session),
            NodeMessage::Away {
                session,
                rooms,
                handed_over,
            } => self.member_away(session, rooms, handed_over),
            NodeMessage::Back {
                session,
                rooms,
                node,
                snapshots,
            } => self.member_back(session, rooms, node, snapshots),
            NodeMessage::Gone {
                session,
                rooms,
                reason,
            } => self.member_gone(session, rooms, reason),
            NodeMessage::Direct { to, frame } => self.deliver(to, Bytes::from(frame)),
            NodeMessage::Moved { session } => self.session_moved(session),
            NodeMessage::Kicked { session } => self.session_kicked(session),
        }
    }

    /// The store is reachable again (`true`), or not.
    pub fn on_link(&mut self, up: bool, now: Instant) {
        self.now = now;
        let was = self.up;
        self.up = up;
        if up && !was {
            self.up_since = Some(now);
            self.last_beat = None;
            self.call(Op::Beat, Then::Nothing);
            for fill in self.fanout.catch_up_all() {
                self.fill(fill);
            }
            self.check_seats();
            self.ask_joins_again();
            self.resend_lost_messages();
            self.retry_routing();
        }
        if !up && was {
            self.up_since = None;
        }
    }

    /// Time passes: heartbeats, lease renewals, away sessions' grace, handed-over sessions,
    /// dead nodes, the lobby.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        self.expire_away();
        let beat_every = (self.cfg.node_ttl / 3).min(Duration::from_secs(1));
        if self.up
            && self
                .last_beat
                .is_none_or(|t| now.duration_since(t) >= beat_every)
        {
            self.last_beat = Some(now);
            self.call(Op::Beat, Then::Nodes);
            self.call(Op::OrphansDue, Then::Orphans);
        }
        if self
            .last_renew
            .is_none_or(|t| now.duration_since(t) >= beat_every)
        {
            self.last_renew = Some(now);
            self.renew_leases();
        }
        self.drop_lapsed_leases();
        self.retry_routing();
        let patches = self.cfg.state_patch_interval;
        if !patches.is_zero() && now.duration_since(self.last_patch_flush) >= patches {
            self.last_patch_flush = now;
            self.host.flush_state_patches();
            self.flush_host(home::Origin::None);
        }
        if now.duration_since(self.last_lobby_flush) >= self.cfg.lobby_interval {
            self.last_lobby_flush = now;
            self.flush_lobby();
        }
        self.advance_logic(now);
    }

    /// Runs the ticks and timers due in the rooms with logic homed here, and commits what
    /// they changed like any request's.
    pub fn advance_logic(&mut self, now: Instant) {
        self.now = now;
        if self.host.next_logic_deadline().is_some_and(|at| at <= now) {
            self.host.advance_logic_now(now);
            self.flush_host(home::Origin::None);
        }
    }

    /// The ticks due in rooms homed here, to run on the driver's pool (with `logic_pool`).
    pub fn take_logic_jobs(&mut self) -> Vec<crate::game::LogicJob> {
        self.host.take_logic_jobs()
    }

    /// A room's logic is back from the pool: what its tick asked for is committed like any
    /// call's, then the requests that waited for it are served, in the order they came.
    pub fn logic_done(&mut self, done: crate::game::LogicDone) {
        self.host.set_clock(self.now);
        self.host.logic_done(done);
        self.flush_host(home::Origin::None);
        for (forwarded, matching) in std::mem::take(&mut self.waiting_for_logic) {
            self.serve(forwarded, matching, None);
        }
    }

    /// When the rooms with logic homed here next want the clock.
    pub fn next_logic_deadline(&self) -> Option<Instant> {
        self.host.next_logic_deadline()
    }

    fn send_frame(&mut self, id: SessionId, frame: &ServerFrame) {
        self.deliver(id, encode_server(frame));
    }

    fn send_error(&mut self, id: SessionId, reference: Option<Ref>, err: &RequestError) {
        self.metrics.error(err.code());
        self.send_frame(
            id,
            &ServerFrame::Error(ErrorFrame {
                reference,
                code: err.code(),
                message: err.to_string(),
                reason: None,
            }),
        );
    }

    fn send_ok(&mut self, id: SessionId, reference: Option<Ref>) {
        if let Some(reference) = reference {
            self.send_frame(
                id,
                &ServerFrame::Ok {
                    reference,
                    data: None,
                },
            );
        }
    }
}

/// The error a failed store call gives a request that would have changed something.
fn request_error(err: LinkError) -> RequestError {
    RequestError::from(err)
}

#[cfg(any(test, feature = "script"))]
impl<O: Outlet> Engine<O> {
    /// The rooms this node is home to, each with its lease's epoch and until when this node
    /// may decide for it.
    pub fn leases(&self) -> Vec<(String, u64, Instant)> {
        self.hosted
            .iter()
            .map(|(room, h)| (room.clone(), h.epoch, h.valid_until))
            .collect()
    }

    /// The hosting registry's own invariants.
    pub fn check_host(&self) -> Result<(), String> {
        self.host.check_invariants()
    }

    /// Requests sent to rooms' homes and not answered yet.
    pub fn requests_in_flight(&self) -> usize {
        self.forwards.len()
    }
}

/// Whether a request seats its session in a room (and answers with `joined`).
fn joins(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::Join { .. } | ClientFrame::Create { .. } | ClientFrame::JoinOrCreate { .. }
    )
}

/// The room a request names, if it names one.
fn room_of(frame: &ClientFrame) -> Option<&str> {
    match frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room, .. }
        | ClientFrame::Emit { room, .. }
        | ClientFrame::Lock { room, .. }
        | ClientFrame::Unlock { room, .. }
        | ClientFrame::Kick { room, .. }
        | ClientFrame::SetMetadata { room, .. }
        | ClientFrame::UpdateState { room, .. } => Some(room),
        ClientFrame::Create { room, .. } => room.as_deref(),
        _ => None,
    }
}
