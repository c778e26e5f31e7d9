//! Matchmaking: `join_or_create` puts a session in the fullest open room its filter matches,
//! oldest among equals, or makes one; served one request at a time, it never overfills.

use super::*;

impl<O: Outlet> Registry<O> {
    pub(super) fn join_or_create(
        &mut self,
        id: SessionId,
        filter: &RoomFilter,
        mut options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        // The room made here must match the same filter next time, or every racer would make
        // its own: the filter's conditions become the new room's metadata.
        if let Some(mode) = &filter.mode {
            options
                .metadata
                .insert("mode".to_owned(), Value::from(mode.as_str()));
        }
        options.metadata.extend(filter.metadata.clone());
        let rules = self.limits.rules_from(options)?;
        self.check_can_join(id, None)?;
        let member_of = self.sessions.get(&id).map(|e| &e.rooms);
        let best = self
            .rooms
            .iter()
            .filter(|(name, room)| {
                room.takes_matchmaking(filter)
                    && !member_of.is_some_and(|rooms| rooms.contains(name))
                    && self.may_enter(id, name)
            })
            .max_by_key(|(_, room)| (room.members.len(), std::cmp::Reverse(room.created)))
            .map(|(name, _)| name.clone());
        let room_name = match best {
            Some(name) => name,
            None => {
                let name = new_room_id();
                self.check_may_enter(id, &name)?;
                self.open_room(&name, rules)?;
                name
            }
        };
        self.admit(id, &room_name, reference);
        Ok(Answered::No)
    }
}
