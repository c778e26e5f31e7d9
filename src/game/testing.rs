//! A testing kit for rooms with logic: a game's room type runs in the server's real
//! `Registry` (the embedded default limits), with no sockets and no clock but the test's.
//! Join players, send their messages, advance time for ticks and timers, and look at what
//! each player was sent: the very frames a client would decode.
//!
//! ```
//! use parlor::game::testing::TestRoom;
//! use parlor::game::{Ctx, Refusal, Reply, RoomLogic, RoomTypes, SessionId, Value};
//!
//! struct Echo;
//! impl RoomLogic for Echo {
//!     fn message(&mut self, ctx: &mut Ctx, _: SessionId, event: &str, data: Value)
//!         -> Result<Reply, Refusal> {
//!         ctx.broadcast(event, data);
//!         Ok(Reply::Ok)
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let types = RoomTypes::new().add("echo", |_: &mut Ctx, _: &Value| Ok(Box::new(Echo) as _));
//! let mut room = TestRoom::new(types, "echo", Value::Nil)?;
//! let ann = room.join("ann")?;
//! room.send(ann, "hi", Value::from(1))?;
//! assert_eq!(room.events(ann), vec![("hi".to_string(), Value::from(1))]);
//! # Ok(())
//! # }
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parlor_protocol::{
    decode_server, ClientFrame, Document, ErrorCode, ErrorFrame, LeaveReason, RoomOptions,
    ServerFrame, SessionId, Value,
};

use super::RoomTypes;
use crate::registry::{Close, Outlet, Overflow, Profile, Registry};

/// The room's name in the kit.
const ROOM: &str = "test-room";

/// What a player's frames are kept in.
#[derive(Clone, Default)]
struct Inbox(Rc<RefCell<Vec<Bytes>>>);

impl Outlet for Inbox {
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow> {
        self.0.borrow_mut().push(frame);
        Ok(())
    }

    fn close(&self, _: Close) {}
}

/// A refusal as the player saw it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Refused {
    pub code: ErrorCode,
    /// The game's own code, for `room_refused`.
    pub reason: Option<String>,
    pub message: String,
}

impl From<ErrorFrame> for Refused {
    fn from(frame: ErrorFrame) -> Self {
        Self {
            code: frame.code,
            reason: frame.reason,
            message: frame.message,
        }
    }
}

/// One room of a game's type, and its players.
pub struct TestRoom {
    registry: Registry<Inbox>,
    room_type: String,
    type_options: Value,
    inboxes: HashMap<SessionId, Inbox>,
    users: HashMap<SessionId, String>,
    /// How many of each player's frames were read already.
    read: HashMap<SessionId, usize>,
    now: Instant,
    next_ref: u64,
}

impl TestRoom {
    /// A room of type `room_type` from `types`, made with `type_options` when the first
    /// player joins.
    /// Fails only if the embedded configuration does not load (a broken build).
    pub fn new(
        types: RoomTypes,
        room_type: &str,
        type_options: Value,
    ) -> Result<Self, crate::config::ConfigError> {
        let config = crate::Config::embedded()?;
        let now = Instant::now();
        let mut registry =
            Registry::new(crate::server::registry_limits(&config)).with_room_types(types);
        registry.advance(now);
        Ok(Self {
            registry,
            room_type: room_type.to_owned(),
            type_options,
            inboxes: HashMap::new(),
            users: HashMap::new(),
            read: HashMap::new(),
            now,
            next_ref: 0,
        })
    }

    /// Connects a player as `user` and joins the room (the first one makes it).
    pub fn join(&mut self, user: &str) -> Result<SessionId, Refused> {
        let id = SessionId::new_random();
        let inbox = Inbox::default();
        self.registry.connect_with(
            id,
            inbox.clone(),
            Profile {
                user: Some(user.to_owned()),
                resume_token: format!("token-{id}"),
                ..Profile::default()
            },
        );
        self.inboxes.insert(id, inbox);
        self.users.insert(id, user.to_owned());
        let exists = self.registry.room_count() > 0;
        let reference = self.reference();
        let frame = if exists {
            ClientFrame::Join {
                reference: Some(reference),
                room: ROOM.to_owned(),
                password: None,
                create: false,
            }
        } else {
            ClientFrame::Create {
                reference: Some(reference),
                room: Some(ROOM.to_owned()),
                options: RoomOptions {
                    room_type: Some(self.room_type.clone()),
                    type_options: Some(self.type_options.clone()),
                    ..RoomOptions::default()
                },
            }
        };
        self.registry.handle(id, frame);
        match self.answer(id, reference) {
            Ok(_) => Ok(id),
            Err(refused) => Err(refused),
        }
    }

    /// Player `from` sends `event` (an `emit` to the room). `Ok`: the logic's answer, if it
    /// gave data.
    pub fn send(
        &mut self,
        from: SessionId,
        event: &str,
        data: impl Into<Value>,
    ) -> Result<Option<Value>, Refused> {
        self.request(
            from,
            ClientFrame::Emit {
                reference: None,
                room: ROOM.to_owned(),
                event: event.to_owned(),
                data: data.into(),
                echo: false,
            },
        )
    }

    /// Player `from` sends any request (a state write, a lock...), answered as a client is.
    pub fn request(
        &mut self,
        from: SessionId,
        mut frame: ClientFrame,
    ) -> Result<Option<Value>, Refused> {
        let reference = self.reference();
        *frame.reference_mut() = Some(reference);
        self.registry.handle(from, frame);
        self.answer(from, reference)
    }

    /// Player `who` leaves the room.
    pub fn leave(&mut self, who: SessionId) {
        let _ = self.request(
            who,
            ClientFrame::Leave {
                reference: None,
                room: ROOM.to_owned(),
            },
        );
    }

    /// Player `who`'s connection drops (away for the server's grace).
    pub fn drop_connection(&mut self, who: SessionId) {
        self.registry.disconnect(who, LeaveReason::Dropped);
    }

    /// Player `who`, away, comes back on a new connection (a `resume`, with no positions: it
    /// gets the room's `joined` again).
    pub fn reconnect(&mut self, who: SessionId) -> Result<(), Refused> {
        let connection = SessionId::new_random();
        let inbox = self.inboxes.get(&who).cloned().unwrap_or_default();
        let user = self.users.get(&who).cloned();
        self.registry.connect_with(
            connection,
            inbox,
            Profile {
                user,
                ..Profile::default()
            },
        );
        self.registry
            .resume(connection, who, &format!("token-{who}"), &[], None)
            .map(|_| ())
            .map_err(|err| Refused {
                code: err.code(),
                reason: err.reason(),
                message: err.to_string(),
            })
    }

    /// Time passes (ticks and timers run, in steps of at most 1 ms past each deadline).
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self
            .registry
            .next_logic_deadline()
            .filter(|at| *at <= until)
        {
            self.now = at.max(self.now);
            self.registry.advance(self.now);
        }
        self.now = until;
        self.registry.advance(self.now);
    }

    /// Every frame player `who` was sent, in order.
    pub fn frames(&self, who: SessionId) -> Vec<ServerFrame> {
        self.inboxes
            .get(&who)
            .map(|inbox| {
                inbox
                    .0
                    .borrow()
                    .iter()
                    // The server's own frames always decode.
                    .filter_map(|bytes| decode_server(bytes, 128).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The frames player `who` was sent since the last call.
    pub fn take_frames(&mut self, who: SessionId) -> Vec<ServerFrame> {
        let frames = self.frames(who);
        let read = self.read.entry(who).or_default();
        let new = frames[(*read).min(frames.len())..].to_vec();
        *read = frames.len();
        new
    }

    /// The events (`event` from the room's logic or another member, and `direct`) player
    /// `who` was sent, as (event, data), in order.
    pub fn events(&self, who: SessionId) -> Vec<(String, Value)> {
        self.frames(who)
            .into_iter()
            .filter_map(|frame| match frame {
                ServerFrame::Event(e) => Some((e.event, e.data)),
                ServerFrame::Direct(d) => Some((d.event, d.data)),
                _ => None,
            })
            .collect()
    }

    /// The room's shared state, as the server holds it (`None` once the room is gone).
    pub fn state(&self) -> Option<Document> {
        self.registry.state_of(ROOM).map(|(state, _)| state.clone())
    }

    /// Whether the room still exists.
    pub fn exists(&self) -> bool {
        self.registry.state_of(ROOM).is_some()
    }

    /// Checks the registry's own invariants (membership both ways, owners, ...).
    pub fn check(&self) -> Result<(), String> {
        self.registry.check_invariants()
    }

    fn reference(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    /// The answer to request `reference` among `who`'s frames.
    fn answer(&self, who: SessionId, reference: u64) -> Result<Option<Value>, Refused> {
        for frame in self.frames(who).into_iter().rev() {
            match frame {
                ServerFrame::Ok {
                    reference: r, data, ..
                } if r == reference => return Ok(data),
                ServerFrame::Joined(j) if j.reference == Some(reference) => return Ok(None),
                ServerFrame::Error(e) if e.reference == Some(reference) => return Err(e.into()),
                _ => {}
            }
        }
        // Requests with nothing to say (an `emit` without `ref` answers nothing) succeed.
        Ok(None)
    }
}
