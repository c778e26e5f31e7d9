//! One room: its members in join order, each with the outlet that reaches it, and the offset
//! its next event will carry.

use parlor_protocol::SessionId;

pub(crate) struct Room<O> {
    /// Members in the order they joined (so the oldest is first).
    pub(crate) members: Vec<(SessionId, O)>,
    /// Offset of the next event emitted to this room; offsets start at 0 and never repeat
    /// while the room exists.
    pub(crate) next_offset: u64,
}

impl<O> Room<O> {
    pub(crate) fn new() -> Self {
        Self {
            members: Vec::new(),
            next_offset: 0,
        }
    }

    pub(crate) fn remove(&mut self, id: SessionId) -> bool {
        match self.members.iter().position(|(member, _)| *member == id) {
            Some(index) => {
                self.members.remove(index);
                true
            }
            None => false,
        }
    }

    pub(crate) fn member_ids(&self) -> Vec<SessionId> {
        self.members.iter().map(|(id, _)| *id).collect()
    }

    pub(crate) fn take_offset(&mut self) -> u64 {
        let offset = self.next_offset;
        self.next_offset += 1;
        offset
    }
}
