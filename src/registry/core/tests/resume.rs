//! Unit tests of away sessions, resume with replay or snapshot, history bounds, the rooms a
//! token allows, the backend operations and shutdown.

use std::time::{Duration, Instant};

use parlor_protocol::RoomPosition;

use super::*;

const GRACE: Duration = Duration::from_secs(15);

fn resumable() -> RegistryLimits {
    RegistryLimits {
        reconnect_grace: GRACE,
        ..limits()
    }
}

impl Harness {
    /// Connects a session with resume token `token` (and `user`, `rooms` when given).
    fn connect_as(
        &mut self,
        token: &str,
        user: Option<&str>,
        rooms: Option<&[&str]>,
    ) -> (SessionId, Recorder) {
        let id = SessionId::new_random();
        let outlet = Recorder::default();
        let profile = Profile {
            resume_token: token.into(),
            user: user.map(Into::into),
            rooms: rooms.map(RoomPatterns::new),
            node: None,
        };
        self.registry.connect_with(id, outlet.clone(), profile);
        (id, outlet)
    }

    /// The position after the last frame of `room` that `frames` show (from its `joined` on).
    fn position(room: &str, frames: &[ServerFrame]) -> RoomPosition {
        let mut position = RoomPosition {
            room: room.into(),
            epoch: String::new(),
            offset: 0,
        };
        for frame in frames {
            position.advance(frame);
        }
        position
    }

    fn resume(
        &mut self,
        connection: SessionId,
        session: SessionId,
        token: &str,
        positions: &[RoomPosition],
    ) -> Result<SessionId, RequestError> {
        let result = self
            .registry
            .resume(connection, session, token, positions, Some(5));
        self.check();
        result
    }
}

fn events(frames: &[ServerFrame]) -> Vec<i64> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Event(e) => e.data.as_i64(),
            _ => None,
        })
        .collect()
}

/// Session a (token "tok") and b in room "r", and a's position there.
fn two_in_r(h: &mut Harness) -> (SessionId, SessionId, RoomPosition) {
    let (a, out_a) = h.connect_as("tok", None, None);
    let (b, _) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    let position = Harness::position("r", &out_a.take());
    (a, b, position)
}

/// A fresh connection resumes a (token "tok") from `positions`; what it received.
fn resume_a(h: &mut Harness, a: SessionId, positions: &[RoomPosition]) -> Vec<ServerFrame> {
    let (fresh, out_fresh) = h.connect();
    assert_eq!(h.resume(fresh, a, "tok", positions), Ok(a));
    out_fresh.take()
}

fn emit_n(h: &mut Harness, from: SessionId, room: &str, values: std::ops::Range<i64>) {
    for n in values {
        h.run(
            from,
            ClientFrame::Emit {
                reference: None,
                room: room.into(),
                event: "n".into(),
                data: Value::from(n),
                echo: false,
            },
        );
    }
}

#[test]
fn a_dropped_session_is_away_then_resumes_with_every_missed_frame_once_in_order() {
    let mut h = Harness::with_limits(resumable());
    let (a, out_a) = h.connect_as("secret-a", None, None);
    let (b, out_b) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    emit_n(&mut h, b, "r", 0..2);
    let seen = out_a.take();
    assert_eq!(events(&seen), vec![0, 1]);
    let position = Harness::position("r", &seen);

    h.registry.disconnect(a, LeaveReason::Dropped);
    h.check();
    match &out_b.take()[..] {
        [.., ServerFrame::Presence(p)] => {
            assert_eq!((p.session, p.status), (a, PresenceStatus::Away))
        }
        other => panic!("expected away, got {other:?}"),
    }
    emit_n(&mut h, b, "r", 2..5);

    let (fresh, out_fresh) = h.connect();
    assert_eq!(h.resume(fresh, a, "secret-a", &[position]), Ok(a));
    let frames = out_fresh.take();
    match &frames[0] {
        ServerFrame::Resumed(r) => {
            assert_eq!((r.session, r.reference, r.rooms.len()), (a, Some(5), 1));
            assert!(r.rooms[0].recovered);
        }
        other => panic!("expected resumed first, got {other:?}"),
    }
    assert_eq!(events(&frames), vec![2, 3, 4]);
    assert!(
        !h.registry.sessions.contains_key(&fresh),
        "the fresh session is gone"
    );
    // The room hears the member is back, and later frames reach the new connection.
    assert!(out_b
        .take()
        .iter()
        .any(|f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Back)));
    emit_n(&mut h, b, "r", 5..6);
    assert_eq!(events(&out_fresh.take()), vec![5]);
    // Frames a sent without echo are not replayed to a.
    assert_eq!(h.registry.away_count(), 0);
}

#[test]
fn own_frames_without_echo_are_not_replayed_and_a_resume_while_connected_replaces_the_connection() {
    let mut h = Harness::with_limits(resumable());
    let (a, out_a) = h.connect_as("tok", None, None);
    let (b, _) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    let position = Harness::position("r", &out_a.take());
    emit_n(&mut h, a, "r", 0..3);
    emit_n(&mut h, b, "r", 3..4);
    // The old connection never noticed the drop: the resume closes it as replaced.
    let (fresh, out_fresh) = h.connect();
    assert_eq!(h.resume(fresh, a, "tok", &[position]), Ok(a));
    assert_eq!(*out_a.evicted.borrow(), Some(Close::Replaced));
    // Requests still in flight from the old connection are no longer the session's.
    assert!(!h.registry.is_on(a, a) && h.registry.is_on(a, fresh));
    assert_eq!(events(&out_fresh.take()), vec![3]);
    // The old connection's end, reported late, changes nothing.
    h.registry.connection_ended(a, a, LeaveReason::Dropped);
    h.check();
    assert_eq!(h.registry.away_count(), 0);
    assert!(h.registry.rooms["r"].is_member(a));
}

#[test]
fn a_gap_the_history_no_longer_covers_gets_a_snapshot() {
    let mut h = Harness::with_limits(resumable());
    let (a, b, position) = two_in_r(&mut h);
    h.registry.disconnect(a, LeaveReason::Timeout);
    // History keeps 8 frames: 20 events push the gap out of it.
    emit_n(&mut h, b, "r", 0..20);
    let frames = resume_a(&mut h, a, std::slice::from_ref(&position));
    match &frames[..] {
        [ServerFrame::Resumed(r), ServerFrame::Joined(j)] => {
            assert!(!r.rooms[0].recovered);
            assert_eq!(
                (j.room.as_str(), j.offset, j.reference),
                ("r", r.rooms[0].offset, Some(5))
            );
        }
        other => panic!("expected resumed and a snapshot, got {other:?}"),
    }
    // A position from another epoch is a gap too.
    let (b2, _) = h.connect_as("tok2", None, None);
    h.join(b2, "r");
    h.registry.disconnect(b2, LeaveReason::Dropped);
    let (fresh, out_fresh) = h.connect();
    let stale = RoomPosition {
        epoch: "another".into(),
        offset: 0,
        ..position
    };
    assert_eq!(h.resume(fresh, b2, "tok2", &[stale]), Ok(b2));
    assert!(
        matches!(&out_fresh.take()[..], [ServerFrame::Resumed(r), ServerFrame::Joined(_)] if !r.rooms[0].recovered)
    );
}

#[test]
fn after_the_grace_the_session_leaves_with_timeout_and_cannot_resume() {
    let mut h = Harness::with_limits(resumable());
    let start = Instant::now();
    h.registry.advance(start);
    let (a, _) = h.connect_as("tok", None, None);
    let (b, out_b) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    h.registry.disconnect(a, LeaveReason::Dropped);
    out_b.take();
    h.registry.advance(start + GRACE - Duration::from_millis(1));
    assert!(
        h.registry.rooms["r"].is_member(a),
        "still held within the grace"
    );
    h.registry.advance(start + GRACE);
    h.check();
    match &out_b.take()[..] {
        // (a owned the room, so a room_update naming b follows)
        [ServerFrame::Presence(p), ..] => assert_eq!(
            (p.session, p.status, p.reason),
            (a, PresenceStatus::Left, Some(LeaveReason::Timeout))
        ),
        other => panic!("expected left, got {other:?}"),
    }
    let (fresh, out_fresh) = h.connect();
    assert!(matches!(
        h.resume(fresh, a, "tok", &[]),
        Err(RequestError::ResumeFailed(_))
    ));
    assert_eq!(error_code(&out_fresh.take()), Some(ErrorCode::ResumeFailed));
    // The refused connection carries on as the fresh session it was.
    h.join(fresh, "r");
}

#[test]
fn a_wrong_token_a_clean_close_or_a_late_resume_is_refused() {
    let mut h = Harness::with_limits(resumable());
    let (a, _) = h.connect_as("right", None, None);
    h.join(a, "r");
    h.registry.disconnect(a, LeaveReason::Dropped);
    let (fresh, out) = h.connect();
    assert!(h.resume(fresh, a, "wrong", &[]).is_err());
    assert_eq!(error_code(&out.take()), Some(ErrorCode::ResumeFailed));
    // Not the first request: the connection already joined a room.
    h.join(fresh, "s");
    assert!(h.resume(fresh, a, "right", &[]).is_err());
    // A clean close removes the session at once: nothing to resume.
    let (c, _) = h.connect_as("c", None, None);
    h.join(c, "r");
    h.registry.disconnect(c, LeaveReason::Closed);
    assert!(!h.registry.sessions.contains_key(&c));
    // A token for another user's session does not resume it.
    let (u, _) = h.connect_as("u", Some("alice"), None);
    h.join(u, "r");
    h.registry.disconnect(u, LeaveReason::Dropped);
    let (mallory, _) = h.connect_as("m", Some("mallory"), None);
    assert!(h.resume(mallory, u, "u", &[]).is_err());
}

#[test]
fn history_is_bounded_by_frames_and_by_bytes() {
    let mut limits = resumable();
    limits.history_frames = 1000;
    limits.history_bytes = 600;
    let mut h = Harness::with_limits(limits);
    let (a, _) = h.connect();
    h.join(a, "r");
    emit_n(&mut h, a, "r", 0..200);
    let history = &h.registry.rooms["r"].history;
    assert!(
        history.bytes() <= 600 && history.len() < 200,
        "{} frames, {} bytes",
        history.len(),
        history.bytes()
    );
    assert!(
        history.since(0).is_none(),
        "the oldest frames are forgotten"
    );
    assert!(history.since(history.next_offset).is_some());
}

#[test]
fn room_patterns_limit_join_create_and_matchmaking() {
    let mut h = Harness::new();
    let (a, out) = h.connect_as("t", Some("alice"), Some(&["game-*"]));
    h.join(a, "game-1");
    assert!(h.registry.rooms["game-1"].is_member(a));
    h.join(a, "chat");
    assert_eq!(error_code(&out.take()), Some(ErrorCode::Forbidden));
    assert!(!h.registry.rooms.contains_key("chat"));
    // join_or_create makes rooms with server ids, which "game-*" does not allow.
    h.run(
        a,
        ClientFrame::JoinOrCreate {
            reference: Some(3),
            filter: RoomFilter::default(),
            options: RoomOptions::default(),
        },
    );
    let frames = out.take();
    assert!(
        !frames.iter().any(|f| matches!(f, ServerFrame::Joined(_)))
            && error_code(&frames) == Some(ErrorCode::Forbidden),
        "{frames:?}"
    );
    // `create` of a room outside the claim is forbidden, whether the room exists or not: the
    // answer must not tell which rooms exist outside it.
    let (owner, _) = h.connect_as("t3", Some("carol"), None);
    h.join(owner, "den");
    for room in ["den", "nope"] {
        h.run(
            a,
            ClientFrame::Create {
                reference: Some(4),
                room: Some(room.into()),
                options: RoomOptions::default(),
            },
        );
        assert_eq!(
            error_code(&out.take()),
            Some(ErrorCode::Forbidden),
            "{room}"
        );
    }
    // Members see the user id in presence and in `joined`.
    let (b, out_b) = h.connect_as("t2", Some("bob"), None);
    h.join(b, "game-1");
    let joined = out_b.take();
    assert!(joined.iter().any(|f| matches!(f, ServerFrame::Joined(j) if j.users.get(&a).map(String::as_str) == Some("alice"))));
    assert!(out
        .take()
        .iter()
        .any(|f| matches!(f, ServerFrame::Presence(p) if p.user.as_deref() == Some("bob"))));
}

#[test]
fn backend_publish_read_kick_and_shutdown() {
    let mut h = Harness::with_limits(resumable());
    let (a, out_a) = h.connect();
    h.join(a, "r");
    out_a.take();
    assert_eq!(h.registry.publish("nowhere", "e".into(), Value::Nil), None);
    let offset = h.registry.publish("r", "news".into(), Value::from("hi"));
    match &out_a.take()[..] {
        [ServerFrame::Event(e)] => assert_eq!((e.from, Some(e.offset)), (BACKEND, offset)),
        other => panic!("{other:?}"),
    }
    let detail = h.registry.room_detail("r");
    assert!(detail.is_some_and(|d| d.members.len() == 1 && d.members[0].session == a));
    assert!(h.registry.kick_session(a));
    assert_eq!(
        *out_a.evicted.borrow(),
        Some(Close::Evicted(LeaveReason::Kicked))
    );
    assert!(!h.registry.kick_session(a));
    h.check();

    let (b, out_b) = h.connect();
    let (c, out_c) = h.connect();
    h.join(b, "s");
    h.join(c, "s");
    out_b.take();
    out_c.take();
    h.registry.shut_down();
    assert_eq!(*out_b.evicted.borrow(), Some(Close::ShuttingDown));
    assert_eq!(*out_c.evicted.borrow(), Some(Close::ShuttingDown));
    // As the connections end, nobody is told (and nobody is held away).
    h.registry.disconnect(b, LeaveReason::Dropped);
    assert!(out_c.take().is_empty());
    assert_eq!(h.registry.away_count(), 0);
}

#[test]
fn sessions_held_away_are_bounded_and_drops_beyond_the_bound_leave_at_once() {
    let mut h = Harness::with_limits(resumable());
    let (watcher, out) = h.connect();
    h.join(watcher, "r");
    let mut dropped = Vec::new();
    for n in 0..5 {
        let (id, _) = h.connect_as(&format!("t{n}"), None, None);
        h.join(id, if n < 2 { "r" } else { "s" });
        dropped.push(id);
    }
    out.take();
    for id in &dropped {
        h.registry.disconnect(*id, LeaveReason::Dropped);
        h.check();
    }
    // The test limits hold 4 away: the fifth left at once.
    assert_eq!(h.registry.away_count(), 4);
    assert!(!h.registry.sessions.contains_key(&dropped[4]));
    let statuses: Vec<PresenceStatus> = out
        .take()
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Presence(p) => Some(p.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![PresenceStatus::Away, PresenceStatus::Away]);
}

#[test]
fn an_away_member_kicked_from_its_last_room_is_forgotten() {
    let mut h = Harness::with_limits(resumable());
    let (owner, _) = h.connect();
    h.join(owner, "r");
    let (a, _) = h.connect_as("tok", None, None);
    h.join(a, "r");
    h.registry.disconnect(a, LeaveReason::Dropped);
    h.run(
        owner,
        ClientFrame::Kick {
            reference: Some(4),
            room: "r".into(),
            session: a,
        },
    );
    assert!(!h.registry.sessions.contains_key(&a));
    assert_eq!(h.registry.away_count(), 0);
    // Found by the registry fuzz target: an away session asking to leave its last room.
    let (b, _) = h.connect_as("tok-b", None, None);
    h.join(b, "r");
    h.registry.disconnect(b, LeaveReason::Dropped);
    h.run(
        b,
        ClientFrame::Leave {
            reference: None,
            room: "r".into(),
        },
    );
    assert!(
        h.registry.rooms["r"].is_member(b),
        "an away session's requests are not served"
    );
}

#[test]
fn a_replay_over_the_replay_budget_becomes_a_snapshot() {
    let mut limits = resumable();
    limits.replay_budget_bytes = 200;
    let mut h = Harness::with_limits(limits);
    let (a, b, position) = two_in_r(&mut h);
    h.registry.disconnect(a, LeaveReason::Dropped);
    // Each event frame is about 80 bytes: two fit the budget, five do not.
    emit_n(&mut h, b, "r", 0..2);
    let frames = resume_a(&mut h, a, std::slice::from_ref(&position));
    assert_eq!(events(&frames), vec![0, 1]);
    h.registry.disconnect(a, LeaveReason::Dropped);
    let position = RoomPosition {
        offset: h.registry.rooms["r"].history.next_offset,
        ..position
    };
    emit_n(&mut h, b, "r", 2..7);
    let frames = resume_a(&mut h, a, &[position]);
    assert!(
        matches!(&frames[..], [ServerFrame::Resumed(r), ServerFrame::Joined(_)] if !r.rooms[0].recovered)
    );
}

/// A reader (its token's read-only claim) is one in the room's checkpoint, so a room carried
/// to a new home keeps it a reader there.
#[test]
fn a_reader_stays_a_reader_in_a_room_carried_to_a_new_home() {
    let mut h = Harness::with_limits(resumable());
    let (writer, _) = h.connect_as("w", Some("w"), None);
    let reader = SessionId::new_random();
    let profile = Profile {
        resume_token: "r".into(),
        user: Some("r".into()),
        rooms: Some(RoomPatterns::new(&["*"]).reading(&["news"])),
        node: None,
    };
    h.registry
        .connect_with(reader, Recorder::default(), profile);
    h.join(writer, "news");
    h.join(reader, "news");
    h.frames_of(reader);
    h.run(reader, emit("news", true));
    assert_eq!(error_code(&h.frames_of(reader)), Some(ErrorCode::Forbidden));

    let checkpoint = some(h.registry.checkpoint("news"), "a checkpoint");
    let state = some(h.registry.state_of("news"), "a state").0.clone();
    let next = some(h.registry.next_offset("news"), "an offset");
    let mut home = Harness::with_limits(resumable());
    home.registry
        .restore("news", checkpoint, state, next, &[], |_| {
            Some(Recorder::default())
        });
    home.run(reader, emit("news", true));
    assert_eq!(
        error_code(&home.frames_of(reader)),
        Some(ErrorCode::Forbidden)
    );
    home.run(writer, emit("news", true));
    assert_eq!(error_code(&home.frames_of(writer)), None);
}

/// A document (a logic that replays its broadcasts) is not snapshotted with every edit: its
/// checkpoint keeps the last snapshot and the offset it was taken at, and a new snapshot is
/// taken once half of what the log keeps came after it. A room restored from that checkpoint
/// and the frames since (what a new home reads from the log) has every edit.
#[test]
fn a_document_is_snapshotted_now_and_then_and_restored_from_its_log() {
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{GetString, ReadTxn, Text, Transact};
    let types =
        || crate::game::RoomTypes::new().add(crate::document::TYPE, crate::document::DocRoom::make);
    let mut h = Harness {
        registry: Registry::new(resumable()).with_room_types(types()),
    };
    let (ann, _) = h.connect_as("a", None, None);
    h.run(
        ann,
        ClientFrame::Create {
            reference: Some(1),
            room: Some("doc".into()),
            options: parlor_protocol::RoomOptions {
                room_type: Some(crate::document::TYPE.into()),
                ..Default::default()
            },
        },
    );
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    let limit = (resumable().history_frames / 2) as u64;
    let mut snapshots_at = std::collections::BTreeSet::new();
    let mut last = None;
    for _ in 0..40 {
        let before = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, "x");
        }
        let update = doc.transact().encode_state_as_update_v1(&before);
        let message = Message::Sync(SyncMessage::Update(update)).encode_v1();
        h.run(
            ann,
            ClientFrame::Emit {
                reference: Some(2),
                room: "doc".into(),
                event: "y".into(),
                data: Value::Binary(message),
                echo: false,
            },
        );
        let checkpoint = some(h.registry.checkpoint("doc"), "a checkpoint");
        let next = some(h.registry.next_offset("doc"), "an offset");
        let from = some(checkpoint.logic_from, "a document's snapshot's offset");
        assert!(
            next - from <= limit,
            "the snapshot fell {} frames behind",
            next - from
        );
        snapshots_at.insert(from);
        last = Some((checkpoint, next));
    }
    assert!(
        snapshots_at.len() <= 40 / limit as usize + 1,
        "a snapshot with every edit: {snapshots_at:?}"
    );
    let (checkpoint, next) = some(last, "a checkpoint");
    let from = some(checkpoint.logic_from, "the snapshot's offset");
    assert!(from < next, "the last edits are only in the log");
    let since: Vec<bytes::Bytes> = some(h.registry.rooms["doc"].history.since(from), "the frames")
        .map(|e| e.frame.clone())
        .collect();
    let state = some(h.registry.state_of("doc"), "a state").0.clone();
    let mut home = Harness {
        registry: Registry::new(resumable()).with_room_types(types()),
    };
    home.registry
        .restore("doc", checkpoint, state, next, &since, |_| {
            Some(Recorder::default())
        });
    let logic = some(
        home.registry.rooms["doc"].logic.as_ref(),
        "the restored logic",
    );
    let bytes = some(logic.snapshot_bytes(), "its snapshot");
    let Ok(Value::Binary(snapshot)) = parlor_protocol::decode_value::<Value>(&bytes, 8) else {
        panic!("a document's snapshot is bytes")
    };
    let restored = yrs::Doc::new();
    let restored_text = restored.get_or_insert_text("t");
    let Ok(update) = yrs::Update::decode_v1(&snapshot) else {
        panic!("the snapshot is a Yjs update")
    };
    assert!(restored.transact_mut().apply_update(update).is_ok());
    assert_eq!(
        restored_text.get_string(&restored.transact()),
        "x".repeat(40)
    );
}

/// A reader never owns a room: one alone in it leaves it ownerless, the first writer to come
/// owns it (the reader is told), and an owner leaving hands the room to its oldest writer.
#[test]
fn a_reader_never_owns_a_room() {
    let mut h = Harness::with_limits(resumable());
    let reader = SessionId::new_random();
    h.registry.connect_with(
        reader,
        Recorder::default(),
        Profile {
            resume_token: "r".into(),
            user: Some("r".into()),
            rooms: Some(RoomPatterns::new(&["*"]).reading(&["hall"])),
            node: None,
        },
    );
    h.join(reader, "hall");
    assert_eq!(h.registry.rooms["hall"].owner, None);
    h.frames_of(reader);
    let (ann, _) = h.connect_as("a", Some("a"), None);
    h.join(ann, "hall");
    assert_eq!(h.registry.rooms["hall"].owner, Some(ann));
    assert!(
        h.frames_of(reader)
            .iter()
            .any(|f| matches!(f, ServerFrame::RoomUpdate(u) if u.owner == Some(ann))),
        "the reader hears who owns the room"
    );
    let (bob, _) = h.connect_as("b", Some("b"), None);
    h.join(bob, "hall");
    h.run(
        ann,
        ClientFrame::Leave {
            reference: None,
            room: "hall".into(),
        },
    );
    assert_eq!(
        h.registry.rooms["hall"].owner,
        Some(bob),
        "the oldest writer, not the older reader"
    );
}

/// `value`, which the test needs there (it fails saying `what` is missing).
fn some<T>(value: Option<T>, what: &str) -> T {
    match value {
        Some(value) => value,
        None => panic!("no {what}"),
    }
}
