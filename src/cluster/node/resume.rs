//! Resuming a session on this node, wherever it was: Redis hands the session over (its old
//! node is told to let go), then each room is caught up from its stream, or with a snapshot
//! when the stream no longer reaches back far enough.

use super::*;

impl Handler<Resume> for ClusterActor {
    type Result = ResponseActFuture<Self, Option<SessionId>>;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        let fresh = match self.sessions.get(&msg.current) {
            Some(s)
                if s.rooms.is_empty()
                    && s.joining == 0
                    && !self.lobby.is_subscribed(msg.current) =>
            {
                s
            }
            Some(_) => {
                let err = RequestError::ResumeFailed(
                    "resume must come before any join or lobby subscription",
                );
                self.send_error(ctx, msg.current, msg.reference, &err);
                self.metrics.resume(ResumeOutcome::Refused);
                return Box::pin(actix::fut::ready(None));
            }
            None => return Box::pin(actix::fut::ready(None)),
        };
        if msg.current == msg.session {
            let err = RequestError::ResumeFailed("no such session to resume");
            self.send_error(ctx, msg.current, msg.reference, &err);
            self.metrics.resume(ResumeOutcome::Refused);
            return Box::pin(actix::fut::ready(None));
        }
        let user = fresh.profile.user.clone().unwrap_or_default();
        let mut cmd = self.function("parlor_take_over");
        cmd.arg(msg.session.to_string()).arg(&msg.token).arg(&user);
        let Some(link) = self.link.clone() else {
            return Box::pin(actix::fut::ready(None));
        };
        let reply = link.call(cmd);
        Box::pin(reply.into_actor(self).then(move |reply, actor, ctx| {
            let rooms = match reply.map(wire::answer) {
                Ok(Ok(Answer::Ok(rest))) => taken_rooms(&rest),
                Ok(Ok(Answer::Refused(err))) => Err(err),
                Ok(Ok(Answer::Conflict { .. } | Answer::Gone(_))) | Ok(Err(_)) => {
                    Err(RequestError::OutcomeUnknown("an unexpected answer".into()))
                }
                Err(err) => Err(RequestError::from(err)),
            };
            let rooms = match rooms {
                Ok(rooms) => rooms,
                Err(err) => {
                    actor.metrics.resume(ResumeOutcome::Refused);
                    actor.send_error(ctx, msg.current, msg.reference, &err);
                    return Box::pin(actix::fut::ready(None)) as ResponseActFuture<Self, _>;
                }
            };
            actor.catch_up_resumed(ctx, msg, rooms)
        }))
    }
}

/// `parlor_take_over`'s rooms: name, epoch, next offset.
fn taken_rooms(rest: &[Reply]) -> Result<Vec<(String, String, u64)>, RequestError> {
    let bad = || RequestError::OutcomeUnknown("an unreadable resume".into());
    rest.get(1..)
        .unwrap_or_default()
        .chunks(3)
        .map(|c| match c {
            [room, epoch, offset] => Ok((
                wire::text(room).ok_or_else(bad)?,
                wire::text(epoch).ok_or_else(bad)?,
                wire::number(offset).ok_or_else(bad)?,
            )),
            _ => Err(bad()),
        })
        .collect()
}

/// How one room of a resumed session is caught up.
enum CatchUp {
    Replay(Vec<wire::RoomMessage>),
    Snapshot(Box<Snapshot>),
}

impl ClusterActor {
    /// The session is now this node's: read each room's missed frames (or its snapshot), then
    /// send `resumed`, the catch-up, and attach it to its rooms.
    fn catch_up_resumed(
        &mut self,
        _ctx: &mut Context<Self>,
        msg: Resume,
        rooms: Vec<(String, String, u64)>,
    ) -> ResponseActFuture<Self, Option<SessionId>> {
        let session = msg.session;
        // A connection to this node that still holds the session is replaced.
        if let Some(old) = self.forget(session) {
            if let Some(outlet) = old.outlet {
                outlet.close(Close::Replaced);
            }
        }
        let calls: Vec<_> = rooms
            .iter()
            .map(|(room, epoch, offset)| {
                let position = msg.rooms.iter().find(|p| &p.room == room);
                let replayable = position.filter(|p| &p.epoch == epoch && p.offset <= *offset);
                let cmd = match replayable {
                    Some(p) => {
                        let mut cmd = redis::cmd("XRANGE");
                        cmd.arg(self.settings.link.stream_key(room))
                            .arg(wire::stream_id(p.offset))
                            .arg("+");
                        cmd
                    }
                    None => {
                        let mut cmd = self.function("parlor_snapshot");
                        cmd.arg(room);
                        cmd
                    }
                };
                let reply = self.link.as_ref().map(|l| l.call(cmd));
                (
                    room.clone(),
                    epoch.clone(),
                    replayable.map(|p| p.offset),
                    reply,
                )
            })
            .collect();
        let reads = async move {
            let mut out = Vec::with_capacity(calls.len());
            for (room, epoch, from, reply) in calls {
                let reply = match reply {
                    Some(reply) => reply.await,
                    None => Err(LinkError::Down),
                };
                out.push((room, epoch, from, reply));
            }
            out
        };
        Box::pin(reads.into_actor(self).map(move |reads, actor, ctx| {
            // The connection stays the fresh session until the reads are in; if it ended
            // meanwhile, the session Redis handed over is away again, here.
            let Some(mut fresh) = actor.sessions.remove(&msg.current) else {
                actor.lost_during_resume(ctx, session, &rooms);
                return None;
            };
            fresh.connection = msg.current;
            let mut budget = actor.limits().replay_budget_bytes;
            let mut plans = Vec::new();
            for (room, epoch, from, reply) in reads {
                let plan = match (from, reply) {
                    (Some(from), Ok(reply)) => match wire::parse_stream(reply) {
                        Ok(messages)
                            if messages.first().is_none_or(|m| m.offset == from)
                                && contiguous(&messages) =>
                        {
                            let bytes: usize = messages.iter().map(|m| m.frame.len()).sum();
                            match budget.checked_sub(bytes) {
                                Some(left) => {
                                    budget = left;
                                    Some(CatchUp::Replay(messages))
                                }
                                None => None,
                            }
                        }
                        _ => None,
                    },
                    (None, Ok(reply)) => match wire::answer(reply) {
                        Ok(Answer::Ok(rest)) => Snapshot::parse(&rest)
                            .ok()
                            .map(|s| CatchUp::Snapshot(Box::new(s))),
                        _ => None,
                    },
                    _ => None,
                };
                plans.push(Plan {
                    room,
                    epoch,
                    from,
                    catch_up: plan,
                });
            }
            // Rooms whose replay failed or did not fit get a snapshot, read now.
            let missing: Vec<String> = plans
                .iter()
                .filter(|p| p.catch_up.is_none())
                .map(|p| p.room.clone())
                .collect();
            fresh.rooms = plans.iter().map(|p| p.room.clone()).collect();
            actor.sessions.insert(session, fresh);
            if missing.is_empty() {
                actor.finish_resume(ctx, session, msg.reference, plans);
            } else {
                let mut reads = Vec::new();
                for room in &missing {
                    let mut cmd = actor.function("parlor_snapshot");
                    cmd.arg(room);
                    reads.push((room.clone(), actor.link.as_ref().map(|l| l.call(cmd))));
                }
                let reference = msg.reference;
                let fetch = async move {
                    let mut out = HashMap::new();
                    for (room, reply) in reads {
                        if let Some(reply) = reply {
                            if let Ok(Ok(Answer::Ok(rest))) = reply.await.map(wire::answer) {
                                if let Ok(snapshot) = Snapshot::parse(&rest) {
                                    out.insert(room, snapshot);
                                }
                            }
                        }
                    }
                    out
                };
                ctx.spawn(
                    fetch
                        .into_actor(actor)
                        .map(move |mut snapshots, actor, ctx| {
                            let plans = plans
                                .into_iter()
                                .map(|mut plan| {
                                    if plan.catch_up.is_none() {
                                        plan.catch_up = snapshots
                                            .remove(&plan.room)
                                            .map(|s| CatchUp::Snapshot(Box::new(s)));
                                    }
                                    plan
                                })
                                .collect();
                            actor.finish_resume(ctx, session, reference, plans);
                        }),
                );
            }
            Some(session)
        }))
    }

    /// The connection ended while its resume was read: the session is away on this node, for
    /// its grace, as if it had dropped here.
    fn lost_during_resume(
        &mut self,
        ctx: &mut Context<Self>,
        session: SessionId,
        rooms: &[(String, String, u64)],
    ) {
        self.sessions.insert(
            session,
            LocalSession {
                outlet: None,
                connection: session,
                profile: Profile::default(),
                rooms: rooms.iter().map(|(room, _, _)| room.clone()).collect(),
                joining: 0,
                away_since: Some(Instant::now()),
            },
        );
        self.away.insert(session);
        let mut cmd = self.function("parlor_presence");
        cmd.arg(session.to_string()).arg("away");
        self.run(ctx, cmd, |_, _, _| {});
    }

    fn finish_resume(
        &mut self,
        ctx: &mut Context<Self>,
        session: SessionId,
        reference: Option<Ref>,
        plans: Vec<Plan>,
    ) {
        // A room whose catch-up could not be read at all is left out: Redis went away.
        let plans: Vec<(String, String, u64, CatchUp)> = plans
            .into_iter()
            .filter_map(|plan| {
                let catch_up = plan.catch_up?;
                let (epoch, next) = match &catch_up {
                    CatchUp::Replay(messages) => (
                        plan.epoch,
                        messages
                            .last()
                            .map_or(plan.from.unwrap_or(0), |m| m.offset + 1),
                    ),
                    CatchUp::Snapshot(s) => (s.epoch.clone(), s.offset),
                };
                Some((plan.room, epoch, next, catch_up))
            })
            .collect();
        if let Some(entry) = self.sessions.get_mut(&session) {
            entry.rooms = plans.iter().map(|p| p.0.clone()).collect();
        }
        let resumed = ServerFrame::Resumed(ResumedFrame {
            reference,
            session,
            rooms: plans
                .iter()
                .map(|(room, epoch, next, catch_up)| ResumedRoom {
                    room: room.clone(),
                    epoch: epoch.clone(),
                    offset: *next,
                    recovered: matches!(catch_up, CatchUp::Replay(_)),
                })
                .collect(),
        });
        self.send_to(ctx, session, &resumed);
        let mut all_recovered = true;
        for (room, _, next, catch_up) in plans {
            match catch_up {
                CatchUp::Replay(messages) => {
                    for message in messages {
                        if message.skip != Some(session) {
                            self.deliver(ctx, session, message.frame);
                        }
                    }
                }
                CatchUp::Snapshot(snapshot) => {
                    all_recovered = false;
                    self.states
                        .insert(room.clone(), (snapshot.state.clone(), snapshot.version));
                    self.send_to(
                        ctx,
                        session,
                        &ServerFrame::Joined(snapshot.joined(reference)),
                    );
                }
            }
            self.attach(ctx, &room, session, next);
        }
        self.metrics.resume(if all_recovered {
            ResumeOutcome::Replayed
        } else {
            ResumeOutcome::Snapshot
        });
    }
}

/// How one room of a resumed session is to be caught up.
struct Plan {
    room: String,
    /// The room's epoch, which a replay keeps.
    epoch: String,
    /// Where the client was, when the replay is possible.
    from: Option<u64>,
    catch_up: Option<CatchUp>,
}

fn contiguous(messages: &[wire::RoomMessage]) -> bool {
    messages.windows(2).all(|w| w[1].offset == w[0].offset + 1)
}
