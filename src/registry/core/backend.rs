//! What the backend API, the listings and the lobby read or do: publish into a room, a room
//! whole, every room, the public listing, and the coalesced lobby frames.

use super::*;

/// A room as the backend API reads it. It serializes as one map: the room info's fields, but
/// with `members` the list of members and the count as `member_count` (a flattened `RoomInfo`
/// would write the key `members` twice).
#[derive(Clone, Debug, PartialEq)]
pub struct RoomDetail {
    pub info: RoomInfo,
    pub private: bool,
    pub members: Vec<MemberDetail>,
    pub state: Document,
    pub version: u64,
    pub epoch: String,
    pub offset: u64,
}

impl serde::Serialize for RoomDetail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Detail<'a> {
            room: &'a str,
            member_count: u32,
            max_members: u32,
            locked: bool,
            locked_by_owner: bool,
            password: bool,
            owner: Option<SessionId>,
            metadata: &'a Metadata,
            private: bool,
            members: &'a [MemberDetail],
            state: &'a Document,
            version: u64,
            epoch: &'a str,
            offset: u64,
        }
        // Taken apart whole, so that a field added to RoomInfo cannot be left out here.
        let RoomInfo {
            room,
            members: member_count,
            max_members,
            locked,
            locked_by_owner,
            password,
            owner,
            metadata,
            ..
        } = &self.info;
        Detail {
            room,
            member_count: *member_count,
            max_members: *max_members,
            locked: *locked,
            locked_by_owner: *locked_by_owner,
            password: *password,
            owner: *owner,
            metadata,
            private: self.private,
            members: &self.members,
            state: &self.state,
            version: self.version,
            epoch: &self.epoch,
            offset: self.offset,
        }
        .serialize(serializer)
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MemberDetail {
    pub session: SessionId,
    pub user: Option<String>,
    pub away: bool,
}

impl<O: Outlet> Registry<O> {
    /// Emits `event` into `room_name` on behalf of the backend (`from` is the nil id). Returns
    /// the event's offset, or `None` if the room does not exist.
    pub fn publish(&mut self, room_name: &str, event: String, data: Value) -> Option<u64> {
        if !self.rooms.contains_key(room_name) {
            return None;
        }
        let offset = self.broadcast(room_name, None, |offset| {
            ServerFrame::Event(EventFrame {
                room: room_name.to_owned(),
                from: BACKEND,
                event,
                data,
                offset,
            })
        });
        self.evict_overflowed();
        offset
    }

    /// Everything about one room, private or not, for the backend API.
    pub fn room_detail(&self, room_name: &str) -> Option<RoomDetail> {
        let room = self.rooms.get(room_name)?;
        Some(RoomDetail {
            info: room.info(room_name),
            private: room.private,
            members: room
                .members
                .iter()
                .map(|m| MemberDetail {
                    session: m.id,
                    user: self.user_of(m.id),
                    away: m.outlet.is_none(),
                })
                .collect(),
            state: room.state.clone(),
            version: room.version,
            epoch: room.history.epoch.clone(),
            offset: room.history.next_offset,
        })
    }

    /// Every room, private ones included and said to be, oldest first, at most `limit`; for
    /// the backend API.
    pub fn all_rooms(&self, limit: usize) -> Vec<Listing> {
        let mut rooms: Vec<(&String, &Room<O>)> = self.rooms.iter().collect();
        rooms.sort_unstable_by_key(|(_, room)| room.created);
        rooms
            .into_iter()
            .take(limit)
            .map(|(name, room)| room.listing(name))
            .collect()
    }

    /// Where room `room_name`'s history is: its epoch and the offset of its next frame.
    pub fn position_of(&self, room_name: &str) -> Option<(String, u64)> {
        self.rooms
            .get(room_name)
            .map(|r| (r.history.epoch.clone(), r.history.next_offset))
    }

    /// The public rooms matching `filter`, oldest first, at most `limit`.
    pub fn list_rooms(&self, filter: &RoomFilter, limit: usize) -> Vec<RoomInfo> {
        let mut matching: Vec<(&String, &Room<O>)> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.matches(filter))
            .collect();
        matching.sort_unstable_by_key(|(_, room)| room.created);
        matching
            .into_iter()
            .take(limit)
            .map(|(name, room)| room.info(name))
            .collect()
    }

    /// Sends every lobby subscriber the changes since the last call, coalesced.
    pub fn flush_lobby(&mut self) {
        for (frame, subscribers) in self.lobby.flush(&self.rooms) {
            for id in subscribers {
                self.deliver(id, frame.clone());
            }
        }
        self.evict_overflowed();
    }

    pub(super) fn answer_list(
        &mut self,
        id: SessionId,
        reference: Option<Ref>,
        rooms: Vec<RoomInfo>,
    ) -> Result<Answered, RequestError> {
        self.send_to(id, &ServerFrame::RoomList { reference, rooms });
        Ok(Answered::Yes)
    }
}
