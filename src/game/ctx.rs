//! `Ctx`: what a room's logic may ask for while one of its hooks runs. Nothing happens at
//! once: each ask becomes an `Effect`, and the registry carries them out, in order, when the
//! hook has returned (so a hook never sees the room change under it).

use std::time::Duration;

use parlor_protocol::{Metadata, SessionId, StateOp, Value};

use super::Player;

/// One thing the logic asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// An `event` to every member (but `except`), in the room's log: it has an offset and a
    /// resumed member gets it again. Its `from` is the nil session id: the room itself.
    Broadcast {
        event: String,
        data: Value,
        except: Option<SessionId>,
    },
    /// A `direct` frame to one member only (its `from` the nil id): what the others must not
    /// see, such as a hand of cards. Not in the room's log.
    Send {
        to: SessionId,
        event: String,
        data: Value,
    },
    /// Member `to`'s own view of the room (what it alone may see): kept, sent to it now as a
    /// `view`, and again after every `joined` or resume.
    View { to: SessionId, data: Value },
    /// A change to the room's shared state: applied as an `update_state` would be (a
    /// `state_patch` to every member, the version moving on).
    State(Vec<StateOp>),
    /// Removes a member (`left`, reason `kicked`).
    Kick(SessionId),
    /// Closes the room to newcomers (`true`) or opens it.
    Lock(bool),
    /// Replaces the room's metadata (what listings and the lobby show).
    Metadata(Metadata),
    /// Ends the room: every member leaves (`left`, reason `ended`), with these words in the
    /// server's log.
    End(String),
}

/// What a hook may ask for, and what it may know: the members and the time.
pub struct Ctx {
    pub(super) members: Vec<Player>,
    pub(super) effects: Vec<Effect>,
    pub(super) tick_every: Option<Duration>,
    pub(super) timers: Vec<(String, Option<Duration>)>,
    /// Time since the room was made.
    pub(super) elapsed: Duration,
}

impl Ctx {
    pub(crate) fn new(
        members: Vec<Player>,
        tick_every: Option<Duration>,
        elapsed: Duration,
    ) -> Self {
        Self {
            members,
            effects: Vec::new(),
            tick_every,
            timers: Vec::new(),
            elapsed,
        }
    }

    /// The members, in the order they joined (away ones included).
    pub fn members(&self) -> &[Player] {
        &self.members
    }

    /// Member `id`, if it is one.
    pub fn member(&self, id: SessionId) -> Option<&Player> {
        self.members.iter().find(|m| m.session == id)
    }

    /// Time since the room was made, on the server's clock.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// An event to every member.
    pub fn broadcast(&mut self, event: impl Into<String>, data: impl Into<Value>) {
        self.effects.push(Effect::Broadcast {
            event: event.into(),
            data: data.into(),
            except: None,
        });
    }

    /// An event to every member but `except`.
    pub fn broadcast_except(
        &mut self,
        except: SessionId,
        event: impl Into<String>,
        data: impl Into<Value>,
    ) {
        self.effects.push(Effect::Broadcast {
            event: event.into(),
            data: data.into(),
            except: Some(except),
        });
    }

    /// An event to one member only.
    pub fn send(&mut self, to: SessionId, event: impl Into<String>, data: impl Into<Value>) {
        self.effects.push(Effect::Send {
            to,
            event: event.into(),
            data: data.into(),
        });
    }

    /// Sets what member `to` alone sees of the room (replacing its view before): a `view`
    /// frame now, and again whenever it rejoins or resumes.
    pub fn set_view(&mut self, to: SessionId, data: impl Into<Value>) {
        self.effects.push(Effect::View {
            to,
            data: data.into(),
        });
    }

    /// Changes the room's shared state (every member sees it).
    pub fn update_state(&mut self, ops: Vec<StateOp>) {
        self.effects.push(Effect::State(ops));
    }

    /// Sets `path` of the room's shared state to `value`.
    pub fn set_state(&mut self, path: &[&str], value: impl Into<Value>) {
        self.update_state(vec![StateOp::Set {
            path: path.iter().map(|p| (*p).into()).collect(),
            value: value.into(),
        }]);
    }

    pub fn kick(&mut self, who: SessionId) {
        self.effects.push(Effect::Kick(who));
    }

    pub fn lock(&mut self, locked: bool) {
        self.effects.push(Effect::Lock(locked));
    }

    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.effects.push(Effect::Metadata(metadata));
    }

    /// Ends the room: every member leaves (`ended`).
    pub fn end(&mut self, why: impl Into<String>) {
        self.effects.push(Effect::End(why.into()));
    }

    /// Ticks the room `hz` times a second from now on (0: no more ticks). At most 120.
    pub fn set_tick_rate(&mut self, hz: u32) {
        self.tick_every = match hz.min(120) {
            0 => None,
            hz => Some(Duration::from_secs(1) / hz),
        };
    }

    /// Calls `RoomLogic::timer(name)` once, `after` from now (replacing a timer of that name).
    pub fn set_timer(&mut self, name: impl Into<String>, after: Duration) {
        self.timers.push((name.into(), Some(after)));
    }

    pub fn cancel_timer(&mut self, name: impl Into<String>) {
        self.timers.push((name.into(), None));
    }
}
