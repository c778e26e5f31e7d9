//! `Registry`, the sans-IO state machine of rooms and membership. Every method runs to
//! completion and speaks to sessions only through their `Outlet`: a frame is encoded once and
//! the same `Bytes` handed to every recipient.

use std::collections::HashMap;

use bytes::Bytes;
use parlor_protocol::{
    encode_server, ClientFrame, DirectFrame, ErrorCode, ErrorFrame, EventFrame, LeaveReason,
    PresenceFrame, PresenceStatus, Ref, ServerFrame, SessionId, Value,
};

use super::room::Room;

/// A session's outbound budget is spent: the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound budget exceeded")]
pub struct Overflow;

/// How the registry reaches one session.
pub trait Outlet: Clone {
    /// Queues an encoded frame for the session, or fails when its outbound budget is spent.
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow>;
    /// Tells the session that the registry has removed it and it must close.
    fn evict(&self, reason: LeaveReason);
}

/// The limits the registry enforces.
#[derive(Clone, Debug)]
pub struct RegistryLimits {
    pub max_rooms_per_session: usize,
    pub max_members_per_room: usize,
    pub max_room_name_bytes: usize,
    pub max_event_name_bytes: usize,
}

/// Why a request was refused. Each maps to one protocol `ErrorCode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("room names are 1 to {max} bytes long")]
    InvalidRoom { max: usize },
    #[error("event names are 1 to {max} bytes long")]
    InvalidEvent { max: usize },
    #[error("not a member of room {0:?}")]
    NotInRoom(String),
    #[error("already a member of room {0:?}")]
    AlreadyJoined(String),
    #[error("a session may be in at most {max} rooms")]
    TooManyRooms { max: usize },
    #[error("room {room:?} is full ({max} members)")]
    RoomFull { room: String, max: usize },
    #[error("no session {0} shares a room with you")]
    UnknownSession(SessionId),
}

impl RequestError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRoom { .. } => ErrorCode::InvalidRoom,
            Self::InvalidEvent { .. } => ErrorCode::InvalidEvent,
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::AlreadyJoined(_) => ErrorCode::AlreadyJoined,
            Self::TooManyRooms { .. } => ErrorCode::TooManyRooms,
            Self::RoomFull { .. } => ErrorCode::RoomFull,
            Self::UnknownSession(_) => ErrorCode::UnknownSession,
        }
    }
}

struct SessionEntry<O> {
    outlet: O,
    /// Rooms this session is in, in the order it joined them.
    rooms: Vec<String>,
}

/// Rooms and membership. See the module docs.
pub struct Registry<O> {
    limits: RegistryLimits,
    sessions: HashMap<SessionId, SessionEntry<O>>,
    rooms: HashMap<String, Room<O>>,
    /// Sessions whose outlet overflowed during the current operation, removed before it returns.
    overflowed: Vec<SessionId>,
}

impl<O: Outlet> Registry<O> {
    pub fn new(limits: RegistryLimits) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            overflowed: Vec::new(),
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Registers a new session, in no room yet.
    pub fn connect(&mut self, id: SessionId, outlet: O) {
        self.sessions.insert(
            id,
            SessionEntry {
                outlet,
                rooms: Vec::new(),
            },
        );
    }

    /// Removes a session that has ended: it leaves every room, and the members who remain are
    /// told why. Unknown ids (already evicted) are ignored.
    pub fn disconnect(&mut self, id: SessionId, reason: LeaveReason) {
        self.remove_session(id, reason);
        self.evict_overflowed();
    }

    /// Carries out one client request from session `id` and answers its `ref`: one `ok` on
    /// success, one `error` on failure (errors are sent even without a `ref`).
    pub fn handle(&mut self, id: SessionId, frame: ClientFrame) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        let reference = frame.reference();
        let result = match frame {
            ClientFrame::Join { room, .. } => self.join(id, room),
            ClientFrame::Leave { room, .. } => self.leave(id, &room),
            ClientFrame::Emit {
                room,
                event,
                data,
                echo,
                ..
            } => self.emit(id, room, event, data, echo),
            ClientFrame::Send {
                to, event, data, ..
            } => self.send_direct(id, to, event, data),
        };
        match result {
            Ok(()) => {
                if let Some(reference) = reference {
                    self.send_to(id, &ServerFrame::Ok { reference });
                }
            }
            Err(err) => self.send_error(id, reference, &err),
        }
        self.evict_overflowed();
    }

    fn join(&mut self, id: SessionId, room_name: String) -> Result<(), RequestError> {
        self.check_room_name(&room_name)?;
        let entry = self
            .sessions
            .get(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        if entry.rooms.contains(&room_name) {
            return Err(RequestError::AlreadyJoined(room_name));
        }
        if entry.rooms.len() >= self.limits.max_rooms_per_session {
            return Err(RequestError::TooManyRooms {
                max: self.limits.max_rooms_per_session,
            });
        }
        let outlet = entry.outlet.clone();
        let room = self
            .rooms
            .entry(room_name.clone())
            .or_insert_with(Room::new);
        if room.members.len() >= self.limits.max_members_per_room {
            let max = self.limits.max_members_per_room;
            return Err(RequestError::RoomFull {
                room: room_name,
                max,
            });
        }
        let presence = encode_server(&ServerFrame::Presence(PresenceFrame {
            room: room_name.clone(),
            session: id,
            status: PresenceStatus::Joined,
            reason: None,
        }));
        for (member, member_outlet) in &room.members {
            if member_outlet.deliver(presence.clone()).is_err() {
                self.overflowed.push(*member);
            }
        }
        room.members.push((id, outlet));
        let joined = ServerFrame::Joined {
            room: room_name.clone(),
            members: room.member_ids(),
        };
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.rooms.push(room_name);
        }
        self.send_to(id, &joined);
        Ok(())
    }

    fn leave(&mut self, id: SessionId, room_name: &str) -> Result<(), RequestError> {
        self.check_room_name(room_name)?;
        let entry = self
            .sessions
            .get_mut(&id)
            .ok_or(RequestError::UnknownSession(id))?;
        let Some(index) = entry.rooms.iter().position(|r| r == room_name) else {
            return Err(RequestError::NotInRoom(room_name.to_owned()));
        };
        entry.rooms.remove(index);
        self.remove_member(room_name, id, LeaveReason::Leave);
        self.send_to(
            id,
            &ServerFrame::Left {
                room: room_name.to_owned(),
                reason: LeaveReason::Leave,
            },
        );
        Ok(())
    }

    fn emit(
        &mut self,
        id: SessionId,
        room_name: String,
        event: String,
        data: Value,
        echo: bool,
    ) -> Result<(), RequestError> {
        self.check_room_name(&room_name)?;
        self.check_event_name(&event)?;
        let is_member = self
            .sessions
            .get(&id)
            .is_some_and(|e| e.rooms.contains(&room_name));
        let room = match self.rooms.get_mut(&room_name) {
            Some(room) if is_member => room,
            _ => return Err(RequestError::NotInRoom(room_name)),
        };
        let offset = room.take_offset();
        let frame = encode_server(&ServerFrame::Event(EventFrame {
            room: room_name,
            from: id,
            event,
            data,
            offset,
        }));
        for (member, outlet) in &room.members {
            if (echo || *member != id) && outlet.deliver(frame.clone()).is_err() {
                self.overflowed.push(*member);
            }
        }
        Ok(())
    }

    fn send_direct(
        &mut self,
        id: SessionId,
        to: SessionId,
        event: String,
        data: Value,
    ) -> Result<(), RequestError> {
        self.check_event_name(&event)?;
        let shares_room = match (self.sessions.get(&id), self.sessions.get(&to)) {
            (Some(from), Some(target)) => from.rooms.iter().any(|r| target.rooms.contains(r)),
            _ => false,
        };
        if !shares_room {
            return Err(RequestError::UnknownSession(to));
        }
        self.send_to(
            to,
            &ServerFrame::Direct(DirectFrame {
                from: id,
                event,
                data,
            }),
        );
        Ok(())
    }

    fn check_room_name(&self, name: &str) -> Result<(), RequestError> {
        let max = self.limits.max_room_name_bytes;
        if name.is_empty() || name.len() > max {
            return Err(RequestError::InvalidRoom { max });
        }
        Ok(())
    }

    fn check_event_name(&self, name: &str) -> Result<(), RequestError> {
        let max = self.limits.max_event_name_bytes;
        if name.is_empty() || name.len() > max {
            return Err(RequestError::InvalidEvent { max });
        }
        Ok(())
    }

    fn send_error(&mut self, id: SessionId, reference: Option<Ref>, err: &RequestError) {
        self.send_to(
            id,
            &ServerFrame::Error(ErrorFrame {
                reference,
                code: err.code(),
                message: err.to_string(),
            }),
        );
    }

    fn send_to(&mut self, id: SessionId, frame: &ServerFrame) {
        if let Some(entry) = self.sessions.get(&id) {
            if entry.outlet.deliver(encode_server(frame)).is_err() {
                self.overflowed.push(id);
            }
        }
    }

    /// Takes `id` out of `room_name`'s members, tells the others, and drops the room if empty.
    /// The caller has already removed the room from the session's own list.
    fn remove_member(&mut self, room_name: &str, id: SessionId, reason: LeaveReason) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        if !room.remove(id) {
            return;
        }
        if room.members.is_empty() {
            self.rooms.remove(room_name);
            return;
        }
        let presence = encode_server(&ServerFrame::Presence(PresenceFrame {
            room: room_name.to_owned(),
            session: id,
            status: PresenceStatus::Left,
            reason: Some(reason),
        }));
        for (member, outlet) in &room.members {
            if outlet.deliver(presence.clone()).is_err() {
                self.overflowed.push(*member);
            }
        }
    }

    /// Removes a session and its memberships; returns its outlet if it was known.
    fn remove_session(&mut self, id: SessionId, reason: LeaveReason) -> Option<O> {
        let entry = self.sessions.remove(&id)?;
        for room in &entry.rooms {
            self.remove_member(room, id, reason);
        }
        Some(entry.outlet)
    }

    /// Evicts every session that overflowed its outbound budget. Telling the remaining members
    /// can overflow further sessions, so this runs until none is left.
    fn evict_overflowed(&mut self) {
        while let Some(id) = self.overflowed.pop() {
            if let Some(outlet) = self.remove_session(id, LeaveReason::SlowConsumer) {
                outlet.evict(LeaveReason::SlowConsumer);
            }
        }
    }

    /// Checks the registry's structural invariants; used by tests (and later by fuzzing).
    /// Returns a description of the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (name, room) in &self.rooms {
            if room.members.is_empty() {
                return Err(format!("room {name:?} is empty but still exists"));
            }
            if room.members.len() > self.limits.max_members_per_room {
                return Err(format!("room {name:?} is over max_members_per_room"));
            }
            for (member, _) in &room.members {
                let listed = self
                    .sessions
                    .get(member)
                    .is_some_and(|s| s.rooms.contains(name));
                if !listed {
                    return Err(format!("{member} is in room {name:?} but does not list it"));
                }
            }
        }
        for (id, entry) in &self.sessions {
            if entry.rooms.len() > self.limits.max_rooms_per_session {
                return Err(format!("{id} is over max_rooms_per_session"));
            }
            for name in &entry.rooms {
                let member = self
                    .rooms
                    .get(name)
                    .is_some_and(|r| r.members.iter().any(|(m, _)| m == id));
                if !member {
                    return Err(format!("{id} lists room {name:?} but is not a member"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
