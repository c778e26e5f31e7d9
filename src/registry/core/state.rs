//! Shared state: `update_state` with compare-and-set, and the patches, sent at once or held
//! and merged until the next flush.

use super::*;

impl<O: Outlet> Registry<O> {
    /// Broadcasts every room's held state patches.
    pub fn flush_state_patches(&mut self) {
        for room in std::mem::take(&mut self.rooms_with_patches) {
            self.broadcast_patches(&room);
        }
        self.evict_overflowed();
    }

    pub(super) fn update_state(
        &mut self,
        id: SessionId,
        room_name: &str,
        ops: Vec<StateOp>,
        if_version: Option<u64>,
    ) -> Result<Answered, RequestError> {
        self.limits.check_room_name(room_name)?;
        let room = self.member_room(id, room_name)?;
        if room.logic.is_some() {
            return Err(RequestError::LogicOnly(room_name.to_owned()));
        }
        let version = room.version;
        self.check_writer(id, room_name)?;
        if let Some(expected) = if_version {
            if expected != version {
                return Err(RequestError::VersionConflict {
                    expected,
                    current: version,
                });
            }
        }
        self.apply_state(room_name, id, ops)?;
        Ok(Answered::No)
    }

    /// Applies `ops` to the room's state as `author` (the nil id: the room's logic), and
    /// sends the patch (now, or held with others).
    pub(super) fn apply_state(
        &mut self,
        room_name: &str,
        author: SessionId,
        ops: Vec<StateOp>,
    ) -> Result<(), RequestError> {
        let limits = self.limits.clone();
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Err(RequestError::NotInRoom(room_name.to_owned()));
        };
        room.state.apply(&ops, limits.state_limits())?;
        room.version += 1;
        let patch = StatePatch {
            version: room.version,
            author,
            ops,
        };
        room.pending_bytes += encoded_len(&patch);
        room.pending_patches.push(patch);
        let send_now =
            !limits.batch_state_patches || room.pending_bytes >= limits.max_patch_batch_bytes;
        if send_now {
            self.broadcast_patches(room_name);
        } else if room.pending_patches.len() == 1 {
            self.rooms_with_patches.push(room_name.to_owned());
        }
        self.touch(room_name);
        Ok(())
    }

    /// Sends the room's held patches, if any, to its members as one `state_patch`.
    pub(super) fn broadcast_patches(&mut self, room_name: &str) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        if room.pending_patches.is_empty() {
            return;
        }
        room.pending_bytes = 0;
        let patches = std::mem::take(&mut room.pending_patches);
        self.broadcast(room_name, None, |offset| {
            ServerFrame::StatePatch(StatePatchFrame {
                room: room_name.to_owned(),
                patches,
                offset,
            })
        });
    }
}
