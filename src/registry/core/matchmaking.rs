//! Matchmaking: `join_or_create` puts a session in the fullest open room its filter matches,
//! oldest among equals, or makes one whose metadata the filter's conditions become; served one
//! request at a time, it never overfills. The pieces are shared with a cluster node, which
//! picks among the index's rooms and asks the chosen room's home to `match_join`.

use super::*;

/// The rules of the room `join_or_create` makes: the options, with the filter's conditions
/// as its metadata, so that the room matches the same filter next time (or every racer would
/// make its own).
pub(crate) fn match_rules(
    limits: &RegistryLimits,
    filter: &RoomFilter,
    mut options: RoomOptions,
) -> Result<RoomRules, RequestError> {
    if let Some(mode) = &filter.mode {
        options
            .metadata
            .insert("mode".to_owned(), Value::from(mode.as_str()));
    }
    options.metadata.extend(filter.metadata.clone());
    limits.rules_from(options)
}

/// Of the candidates (`name`, members, creation order), the one matchmaking picks: the
/// fullest, oldest among equals.
pub fn best_candidate<'a>(
    candidates: impl Iterator<Item = (&'a str, usize, u64)>,
) -> Option<&'a str> {
    candidates
        .max_by_key(|(_, members, created)| (*members, std::cmp::Reverse(*created)))
        .map(|(name, _, _)| name)
}

impl<O: Outlet> Registry<O> {
    pub(super) fn join_or_create(
        &mut self,
        id: SessionId,
        filter: &RoomFilter,
        options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<Answered, RequestError> {
        // Only rooms of the type it would make (plain rooms for a plain request).
        let room_type = options.room_type.clone();
        let rules = match_rules(&self.limits, filter, options)?;
        self.check_can_join(id, None)?;
        let member_of = self.sessions.get(&id).map(|e| &e.rooms);
        let best = best_candidate(
            self.rooms
                .iter()
                .filter(|(name, room)| {
                    room.takes_matchmaking(filter)
                        && room.room_type() == room_type.as_deref()
                        && !member_of.is_some_and(|rooms| rooms.contains(name))
                        && self.may_enter(id, name)
                })
                .map(|(name, room)| (name.as_str(), room.members.len(), room.created)),
        )
        .map(str::to_owned);
        let room_name = match best {
            Some(name) => name,
            None => {
                let name = new_room_id();
                self.check_may_enter(id, &name)?;
                self.open_room(&name, rules)?;
                name
            }
        };
        self.enter(id, &room_name, reference)?;
        Ok(Answered::No)
    }

    /// A cluster's matchmaking picked `room_name` here for session `id`: it joins if the room
    /// still takes matchmaking for `filter` and the session may enter; refused otherwise, and
    /// nothing is sent (the picker tries elsewhere).
    pub fn match_join(
        &mut self,
        id: SessionId,
        room_name: &str,
        filter: &RoomFilter,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.check_can_join(id, Some(room_name))?;
        let takes = self
            .rooms
            .get(room_name)
            .is_some_and(|room| room.takes_matchmaking(filter));
        if !takes {
            return Err(RequestError::RoomFull {
                room: room_name.to_owned(),
                max: 0,
            });
        }
        self.enter(id, room_name, reference)?;
        self.answer(id, reference, Ok(Answered::No));
        self.evict_overflowed();
        Ok(())
    }

    /// A cluster's matchmaking found no room: session `id` makes `room_name` with the rules
    /// `join_or_create` gives and joins it. Refused (nothing sent) if it may not.
    pub fn match_create(
        &mut self,
        id: SessionId,
        room_name: &str,
        filter: &RoomFilter,
        options: RoomOptions,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        let rules = match_rules(&self.limits, filter, options)?;
        self.check_can_join(id, Some(room_name))?;
        self.open_room(room_name, rules)?;
        self.enter(id, room_name, reference)?;
        self.answer(id, reference, Ok(Answered::No));
        self.evict_overflowed();
        Ok(())
    }
}
