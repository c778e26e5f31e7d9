//! Shared state in a cluster: this node's writes to a room go to Redis one batch at a time,
//! applied here to the last state it saw and stored only if Redis still holds that version;
//! a batch that loses the race is applied again to the state Redis answers with.

use super::*;

impl ClusterActor {
    pub(super) fn update_state(
        &mut self,
        ctx: &mut Context<Self>,
        id: SessionId,
        room: String,
        ops: Vec<StateOp>,
        if_version: Option<u64>,
        reference: Option<Ref>,
    ) -> Result<(), RequestError> {
        self.check_member(id, &room)?;
        if !self.is_up() {
            return Err(RequestError::Unavailable("Redis is unreachable".into()));
        }
        let writes = self.writes.entry(room.clone()).or_default();
        writes.queue.push_back(StateWrite {
            id,
            ops,
            if_version,
            reference,
        });
        if !writes.in_flight {
            self.next_writes(ctx, room);
        }
        Ok(())
    }

    /// Sends the writes queued for `room` as one batch, if no batch is under way.
    fn next_writes(&mut self, ctx: &mut Context<Self>, room: String) {
        let Some(writes) = self.writes.get_mut(&room) else {
            return;
        };
        if writes.queue.is_empty() {
            self.writes.remove(&room);
            return;
        }
        // As on one node, a batch's patches stay within one frame's worth of bytes.
        let max_bytes = self.settings.limits.max_patch_batch_bytes;
        let mut bytes = 0;
        let mut batch = Vec::new();
        while let Some(write) = writes.queue.front() {
            let size = parlor_protocol::encoded_len(&write.ops);
            if !batch.is_empty() && (batch.len() >= WRITE_BATCH || bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            batch.extend(writes.queue.pop_front());
        }
        writes.in_flight = true;
        let base = self
            .states
            .get(&room)
            .cloned()
            .unwrap_or_else(|| (Document::new(), 0));
        self.write_batch(ctx, room, batch, base, false, 0);
    }

    /// One attempt at a batch of state writes: applied here in order to `base`, then stored in
    /// Redis if the state is still at `base`'s version. `fresh`: `base` is what Redis just
    /// said, so a write that does not apply to it is refused; against a possibly stale copy,
    /// the state is read first.
    fn write_batch(
        &mut self,
        ctx: &mut Context<Self>,
        room: String,
        batch: Vec<StateWrite>,
        (mut state, base_version): (Document, u64),
        fresh: bool,
        attempts: usize,
    ) {
        let max_bytes = self.limits().max_state_bytes;
        let mut version = base_version;
        let mut accepted = Vec::with_capacity(batch.len());
        let mut patches = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        let mut stale = false;
        for write in batch {
            let outcome = match write.if_version {
                Some(expected) if expected != version => Err(RequestError::VersionConflict {
                    expected,
                    current: version,
                }),
                _ => state.apply(&write.ops, max_bytes).map_err(|err| match err {
                    StateError::TooLarge { .. } => RequestError::StateTooLarge(err),
                    _ => RequestError::InvalidPath(err),
                }),
            };
            match outcome {
                Ok(()) => {
                    version += 1;
                    patches.push(StatePatch {
                        version,
                        author: write.id,
                        ops: write.ops.clone(),
                    });
                    accepted.push(write);
                }
                Err(err) if fresh => refused.push((write, err)),
                Err(_) => {
                    stale = true;
                    accepted.push(write);
                }
            }
        }
        for (write, err) in refused {
            self.send_error(ctx, write.id, write.reference, &err);
        }
        if accepted.is_empty() {
            return self.writes_done(ctx, room);
        }
        if stale {
            // Read the state as it is (a write from version u64::MAX always conflicts) and try
            // the whole batch against it.
            return self.store_state(ctx, room, accepted, u64::MAX, state, Bytes::new(), attempts);
        }
        let frame = wire::with_offset_to_fill(&ServerFrame::StatePatch(StatePatchFrame {
            room: room.clone(),
            patches,
            offset: 0,
        }));
        self.store_state(ctx, room, accepted, base_version, state, frame, attempts);
    }

    #[allow(clippy::too_many_arguments)]
    fn store_state(
        &mut self,
        ctx: &mut Context<Self>,
        room: String,
        batch: Vec<StateWrite>,
        from: u64,
        state: Document,
        frame: Bytes,
        attempts: usize,
    ) {
        let count = batch.len();
        let mut cmd = self.function("parlor_state");
        cmd.arg(&room)
            .arg(if from == u64::MAX {
                "-1".to_owned()
            } else {
                from.to_string()
            })
            .arg(&parlor_protocol::encode_value(&state)[..])
            .arg(&frame[..])
            .arg(count);
        for write in &batch {
            cmd.arg(write.id.to_string());
        }
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let failure = match reply.map(wire::answer) {
                Ok(Ok(Answer::Ok(_))) => {
                    if actor.rooms.next_offset(&room).is_some() {
                        actor
                            .states
                            .insert(room.clone(), (state, from + count as u64));
                    }
                    for write in &batch {
                        actor.send_ok(ctx, write.id, write.reference);
                    }
                    return actor.writes_done(ctx, room);
                }
                Ok(Ok(Answer::Conflict {
                    version,
                    state: stored,
                })) => match parlor_protocol::decode_value::<Document>(&stored, 64) {
                    Ok(current) if attempts < STATE_ATTEMPTS => {
                        if actor.rooms.next_offset(&room).is_some() {
                            actor
                                .states
                                .insert(room.clone(), (current.clone(), version));
                        }
                        return actor.write_batch(
                            ctx,
                            room,
                            batch,
                            (current, version),
                            true,
                            attempts + 1,
                        );
                    }
                    Ok(_) => RequestError::VersionConflict {
                        expected: from,
                        current: version,
                    },
                    Err(err) => RequestError::Unavailable(format!("an unreadable state: {err}")),
                },
                Ok(Ok(Answer::Gone(gone))) => {
                    // Writers who left (or were kicked) since they wrote are refused; the rest
                    // are applied again, to the state as Redis holds it.
                    let (refused, kept): (Vec<_>, Vec<_>) =
                        batch.into_iter().partition(|w| gone.contains(&w.id));
                    for write in refused {
                        let err = RequestError::NotInRoom(room.clone());
                        actor.send_error(ctx, write.id, write.reference, &err);
                    }
                    if kept.is_empty() {
                        return actor.writes_done(ctx, room);
                    }
                    let read = (Document::new(), u64::MAX);
                    return actor.store_state(
                        ctx,
                        room,
                        kept,
                        read.1,
                        read.0,
                        Bytes::new(),
                        attempts,
                    );
                }
                Ok(Ok(Answer::Refused(err))) => err,
                Ok(Err(err)) => RequestError::Unavailable(err.to_string()),
                Err(err) => RequestError::Unavailable(err.to_string()),
            };
            for write in &batch {
                actor.send_error(ctx, write.id, write.reference, &failure);
            }
            actor.writes_done(ctx, room);
        });
    }

    fn writes_done(&mut self, ctx: &mut Context<Self>, room: String) {
        if let Some(writes) = self.writes.get_mut(&room) {
            writes.in_flight = false;
        }
        self.next_writes(ctx, room);
    }
}

/// A state write waiting for its room's batch.
struct StateWrite {
    id: SessionId,
    ops: Vec<StateOp>,
    if_version: Option<u64>,
    reference: Option<Ref>,
}

/// The state writes this node has for one room: one batch at a time goes to Redis.
#[derive(Default)]
pub(super) struct RoomWrites {
    queue: std::collections::VecDeque<StateWrite>,
    in_flight: bool,
}
