//! Shared state in a cluster: this node's writes to a room go to Redis one batch at a time,
//! applied here to the last state it saw and stored only if Redis still holds that version;
//! a batch that loses the race is applied again to the state Redis answers with.

use super::*;

/// State writes to one room waiting for the batch in flight; beyond, a write is refused
/// (`overloaded`). Sixteen full batches.
const MAX_QUEUED_WRITES: usize = 16 * WRITE_BATCH;

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
        if writes.queue.len() >= MAX_QUEUED_WRITES {
            return Err(RequestError::Overloaded);
        }
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
        let limits = self.limits().state_limits();
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
                _ => state.apply(&write.ops, limits).map_err(RequestError::from),
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
            return self.reread_state(ctx, room, accepted, attempts);
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
            .arg(from)
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
                })) => {
                    return actor.retry_writes(
                        ctx,
                        room,
                        batch,
                        from,
                        (version, &stored),
                        attempts,
                    );
                }
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
                    return actor.reread_state(ctx, room, kept, attempts);
                }
                Ok(Ok(Answer::Refused(err))) => err,
                Ok(Err(err)) => RequestError::OutcomeUnknown(err.to_string()),
                Err(err) => RequestError::from(err),
            };
            for write in &batch {
                actor.send_error(ctx, write.id, write.reference, &failure);
            }
            actor.writes_done(ctx, room);
        });
    }

    /// Reads the room's state and version as Redis holds them, and tries the batch against
    /// them.
    fn reread_state(
        &mut self,
        ctx: &mut Context<Self>,
        room: String,
        batch: Vec<StateWrite>,
        attempts: usize,
    ) {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.settings.link.room_key(&room))
            .arg("ver")
            .arg("st");
        self.run(ctx, cmd, move |actor, ctx, reply| {
            let read = match &reply {
                Ok(Reply::Array(fields)) => fields
                    .first()
                    .and_then(wire::number)
                    .zip(fields.get(1).and_then(wire::bytes)),
                _ => None,
            };
            match (read, reply) {
                (Some((version, stored)), _) => {
                    actor.retry_writes(ctx, room, batch, version, (version, &stored), attempts)
                }
                (None, Ok(_)) => actor.fail_writes(ctx, room, batch, RequestError::NotInRoom),
                (None, Err(err)) => {
                    let err = err.to_string();
                    actor.fail_writes(ctx, room, batch, |_| RequestError::Unavailable(err))
                }
            }
        });
    }

    /// Tries `batch` (last tried from version `tried`) again against the state Redis holds
    /// (`version`, `stored`), unless it has been tried too often.
    fn retry_writes(
        &mut self,
        ctx: &mut Context<Self>,
        room: String,
        batch: Vec<StateWrite>,
        tried: u64,
        (version, stored): (u64, &Bytes),
        attempts: usize,
    ) {
        let current = match parlor_protocol::decode_value::<Document>(stored, 64) {
            Ok(current) => current,
            Err(err) => {
                let err = format!("an unreadable state: {err}");
                return self.fail_writes(ctx, room, batch, |_| RequestError::Unavailable(err));
            }
        };
        if attempts >= STATE_ATTEMPTS {
            return self.fail_writes(ctx, room, batch, |_| RequestError::VersionConflict {
                expected: tried,
                current: version,
            });
        }
        if self.rooms.next_offset(&room).is_some() {
            self.states.insert(room.clone(), (current.clone(), version));
        }
        self.write_batch(ctx, room, batch, (current, version), true, attempts + 1);
    }

    fn fail_writes(
        &mut self,
        ctx: &mut Context<Self>,
        room: String,
        batch: Vec<StateWrite>,
        err: impl FnOnce(String) -> RequestError,
    ) {
        let err = err(room.clone());
        for write in &batch {
            self.send_error(ctx, write.id, write.reference, &err);
        }
        self.writes_done(ctx, room);
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
