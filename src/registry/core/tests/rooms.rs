//! Unit tests of room options, ownership, matchmaking, shared state and the lobby.

use parlor_protocol::{
    Document, JoinedFrame, LobbyFrame, Metadata, RoomFilter, RoomInfo, RoomOptions, StateOp,
};

use super::*;

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect()
}

fn seats(n: u32) -> RoomOptions {
    RoomOptions {
        max_members: Some(n),
        ..RoomOptions::default()
    }
}

impl Harness {
    fn create(&mut self, id: SessionId, room: Option<&str>, options: RoomOptions) -> JoinedFrame {
        self.run(
            id,
            ClientFrame::Create {
                reference: Some(2),
                room: room.map(Into::into),
                options,
            },
        );
        self.last_joined(id)
    }

    fn last_joined(&self, id: SessionId) -> JoinedFrame {
        let frames = self.frames_of(id);
        match frames.iter().find_map(|f| match f {
            ServerFrame::Joined(j) => Some(j.clone()),
            _ => None,
        }) {
            Some(joined) => joined,
            None => panic!("no joined frame among {frames:?}"),
        }
    }

    fn try_join(&mut self, id: SessionId, room: &str, password: Option<&str>) -> Vec<ServerFrame> {
        self.run(
            id,
            ClientFrame::Join {
                reference: Some(3),
                room: room.into(),
                password: password.map(Into::into),
                create: true,
            },
        );
        self.frames_of(id)
    }

    fn list(&mut self, id: SessionId, filter: RoomFilter) -> Vec<RoomInfo> {
        self.run(
            id,
            ClientFrame::ListRooms {
                reference: Some(4),
                filter,
                limit: None,
            },
        );
        match self.frames_of(id).pop() {
            Some(ServerFrame::RoomList {
                reference: Some(4),
                rooms,
            }) => rooms,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn update(&mut self, id: SessionId, room: &str, ops: Vec<StateOp>, if_version: Option<u64>) {
        self.run(
            id,
            ClientFrame::UpdateState {
                reference: Some(5),
                room: room.into(),
                ops,
                if_version,
            },
        );
    }
}

fn set(key: &str, value: impl Into<Value>) -> StateOp {
    StateOp::Set {
        path: vec!["cells".into(), key.into()],
        value: value.into(),
    }
}

fn lobby_frames(frames: Vec<ServerFrame>) -> Vec<LobbyFrame> {
    frames
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Lobby(l) => Some(l),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_room_locks_itself_and_a_freed_seat_opens_it() {
    let mut h = Harness::new();
    let (a, _) = h.connect();
    let (b, _) = h.connect();
    let (c, out_c) = h.connect();
    let joined = h.create(a, Some("r"), seats(2));
    assert_eq!(
        (joined.owner, joined.max_members, joined.locked),
        (Some(a), 2, false)
    );
    h.try_join(b, "r", None);
    assert_eq!(
        error_code(&h.try_join(c, "r", None)),
        Some(ErrorCode::RoomFull)
    );
    h.run(
        b,
        ClientFrame::Leave {
            reference: None,
            room: "r".into(),
        },
    );
    out_c.take();
    assert!(matches!(
        h.try_join(c, "r", None)[0],
        ServerFrame::Joined(_)
    ));
}

#[test]
fn a_hand_locked_room_stays_locked_until_unlocked_by_its_owner() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, _) = h.connect();
    let (c, _) = h.connect();
    h.create(a, Some("r"), seats(3));
    h.try_join(b, "r", None);
    out_a.take();
    h.run(
        b,
        ClientFrame::Lock {
            reference: Some(9),
            room: "r".into(),
        },
    );
    assert_eq!(error_code(&h.frames_of(b)), Some(ErrorCode::NotOwner));
    h.run(
        a,
        ClientFrame::Lock {
            reference: Some(9),
            room: "r".into(),
        },
    );
    let frames = out_a.take();
    assert!(frames
        .iter()
        .any(|f| matches!(f, ServerFrame::RoomUpdate(u) if u.locked)));
    assert_eq!(
        error_code(&h.try_join(c, "r", None)),
        Some(ErrorCode::RoomLocked)
    );
    // A member leaving does not unlock a room locked by hand.
    h.run(
        b,
        ClientFrame::Leave {
            reference: None,
            room: "r".into(),
        },
    );
    assert_eq!(
        error_code(&h.try_join(c, "r", None)),
        Some(ErrorCode::RoomLocked)
    );
    h.run(
        a,
        ClientFrame::Unlock {
            reference: Some(9),
            room: "r".into(),
        },
    );
    assert!(matches!(
        h.try_join(c, "r", None)[0],
        ServerFrame::Joined(_)
    ));
}

#[test]
fn private_rooms_are_not_listed_but_joinable_by_id_and_passwords_are_checked() {
    let mut h = Harness::with_limits(RegistryLimits {
        max_room_name_bytes: 32,
        ..limits()
    });
    let (a, _) = h.connect();
    let (b, _) = h.connect();
    let hidden = h.create(
        a,
        None,
        RoomOptions {
            private: true,
            ..RoomOptions::default()
        },
    );
    assert_eq!(hidden.room.len(), 32, "server-named rooms get a uuid");
    h.create(
        a,
        Some("pw"),
        RoomOptions {
            password: Some("s3cret".into()),
            ..RoomOptions::default()
        },
    );
    let listed = h.list(b, RoomFilter::default());
    assert_eq!(
        listed.iter().map(|r| &r.room[..]).collect::<Vec<_>>(),
        ["pw"]
    );
    assert!(listed[0].password);
    let frames = h.try_join(b, &hidden.room, None);
    assert!(matches!(frames[0], ServerFrame::Joined(_)), "{frames:?}");
    assert_eq!(
        error_code(&h.try_join(b, "pw", None)),
        Some(ErrorCode::WrongPassword)
    );
    assert_eq!(
        error_code(&h.try_join(b, "pw", Some("s3creT"))),
        Some(ErrorCode::WrongPassword)
    );
    assert!(matches!(
        h.try_join(b, "pw", Some("s3cret"))[0],
        ServerFrame::Joined(_)
    ));
}

#[test]
fn create_refuses_existing_names_bad_options_and_rooms_over_the_limit() {
    let mut h = Harness::with_limits(RegistryLimits {
        max_rooms: 2,
        max_rooms_per_session: 8,
        ..limits()
    });
    let (a, out_a) = h.connect();
    h.create(a, Some("r"), RoomOptions::default());
    let refusals = [
        (Some("r"), RoomOptions::default(), ErrorCode::RoomExists),
        (None, seats(0), ErrorCode::InvalidOptions),
        (None, seats(4), ErrorCode::InvalidOptions), // over max_members_per_room (3)
        (
            None,
            RoomOptions {
                metadata: meta(&[("name", &"x".repeat(80))]),
                ..RoomOptions::default()
            },
            ErrorCode::InvalidOptions,
        ),
    ];
    for (room, options, code) in refusals {
        h.run(
            a,
            ClientFrame::Create {
                reference: Some(1),
                room: room.map(Into::into),
                options,
            },
        );
        assert_eq!(error_code(&out_a.take()), Some(code));
    }
    h.create(a, Some("s"), RoomOptions::default());
    h.run(
        a,
        ClientFrame::Create {
            reference: Some(1),
            room: Some("t".into()),
            options: RoomOptions::default(),
        },
    );
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::RoomLimit));
    assert_eq!(h.registry.room_count(), 2);
}

#[test]
fn the_oldest_member_inherits_ownership_and_everyone_is_told() {
    let mut h = Harness::new();
    let (a, _) = h.connect();
    let (b, out_b) = h.connect();
    let (c, out_c) = h.connect();
    h.create(a, Some("r"), RoomOptions::default());
    h.try_join(b, "r", None);
    h.try_join(c, "r", None);
    out_b.take();
    h.registry.disconnect(a, LeaveReason::Dropped);
    for out in [&out_b, &out_c] {
        let frames = out.take();
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, ServerFrame::RoomUpdate(u) if u.owner == Some(b))),
            "{frames:?}"
        );
    }
    // The new owner can kick; the kicked member hears `left`, the rest `presence`.
    h.run(
        b,
        ClientFrame::Kick {
            reference: Some(6),
            room: "r".into(),
            session: c,
        },
    );
    assert!(out_c.take().iter().any(|f| matches!(
        f,
        ServerFrame::Left {
            reason: LeaveReason::Kicked,
            ..
        }
    )));
    let frames = out_b.take();
    assert!(frames.iter().any(|f| matches!(
        f,
        ServerFrame::Presence(p) if p.session == c && p.reason == Some(LeaveReason::Kicked)
    )));
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::Ok {
            reference: 6,
            data: None,
        })
    );
    h.run(
        b,
        ClientFrame::Kick {
            reference: Some(6),
            room: "r".into(),
            session: c,
        },
    );
    assert_eq!(error_code(&out_b.take()), Some(ErrorCode::UnknownSession));
}

#[test]
fn rooms_kept_when_empty_stay_listed_and_the_next_joiner_owns_them() {
    let mut h = Harness::new();
    let (a, _) = h.connect();
    let (b, _) = h.connect();
    h.create(
        a,
        Some("keep"),
        RoomOptions {
            dispose_when_empty: false,
            ..RoomOptions::default()
        },
    );
    h.update(a, "keep", vec![set("x", 1)], None);
    h.run(
        a,
        ClientFrame::Leave {
            reference: None,
            room: "keep".into(),
        },
    );
    let listed = h.list(b, RoomFilter::default());
    assert_eq!((listed[0].members, listed[0].owner), (0, None));
    h.try_join(b, "keep", None);
    let info = &h.list(b, RoomFilter::default())[0];
    assert_eq!(info.owner, Some(b));
}

#[test]
fn join_or_create_fills_the_fullest_matching_room_and_never_overfills() {
    let mut h = Harness::with_limits(RegistryLimits {
        max_members_per_room: 100,
        ..limits()
    });
    let filter = RoomFilter {
        mode: Some("duel".into()),
        ..RoomFilter::default()
    };
    let mut rooms: HashMap<String, usize> = HashMap::new();
    for _ in 0..10 {
        let (id, _) = h.connect();
        h.run(
            id,
            ClientFrame::JoinOrCreate {
                reference: Some(1),
                filter: filter.clone(),
                options: seats(4),
            },
        );
        let joined = h.last_joined(id);
        assert_eq!(joined.metadata.get("mode"), Some(&Value::from("duel")));
        *rooms.entry(joined.room).or_default() += 1;
    }
    let mut sizes: Vec<usize> = rooms.values().copied().collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 4, 4]);
    // Another mode never lands in these rooms.
    let (other, _) = h.connect();
    h.run(
        other,
        ClientFrame::JoinOrCreate {
            reference: Some(1),
            filter: RoomFilter {
                mode: Some("ffa".into()),
                ..RoomFilter::default()
            },
            options: seats(4),
        },
    );
    assert!(!rooms.contains_key(&h.last_joined(other).room));
    // The half-full room is chosen over creating a fourth.
    let (late, _) = h.connect();
    h.run(
        late,
        ClientFrame::JoinOrCreate {
            reference: Some(1),
            filter,
            options: seats(4),
        },
    );
    assert_eq!(rooms.get(&h.last_joined(late).room), Some(&2));
}

#[test]
fn state_updates_apply_in_order_bump_the_version_and_reach_every_member() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    h.create(a, Some("r"), RoomOptions::default());
    h.try_join(b, "r", None);
    out_a.take();
    h.update(a, "r", vec![set("1", "red"), set("2", "blue")], None);
    h.update(b, "r", vec![set("1", "green")], Some(1));
    let a_frames = out_a.take();
    let b_frames = out_b.take();
    let patches = |frames: &[ServerFrame]| -> Vec<(u64, SessionId)> {
        frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::StatePatch(p) => Some(p.patches.iter().map(|p| (p.version, p.author))),
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert_eq!(patches(&a_frames), [(1, a), (2, b)]);
    assert_eq!(patches(&b_frames), [(1, a), (2, b)]);
    // A stale compare-and-set changes nothing.
    h.update(a, "r", vec![set("1", "black")], Some(1));
    match &out_a.take()[..] {
        [ServerFrame::Error(e)] => assert_eq!(e.code, ErrorCode::VersionConflict),
        other => panic!("unexpected {other:?}"),
    }
    let (c, _) = h.connect();
    h.try_join(c, "r", None);
    let room = &h.registry.rooms["r"];
    assert_eq!(room.version, 2);
    assert_eq!(
        room.state.get(&["cells".into(), "1".into()]),
        Some(Value::from("green"))
    );
}

#[test]
fn bad_state_updates_are_typed_and_change_nothing() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    h.create(a, Some("r"), RoomOptions::default());
    h.update(a, "r", vec![set("1", 1)], None);
    out_a.take();
    let before: Document = h.registry.rooms["r"].state.clone();
    let cases = [
        (
            vec![
                set("2", 2),
                StateOp::Set {
                    path: vec!["cells".into(), "1".into(), "x".into()],
                    value: Value::Nil,
                },
            ],
            ErrorCode::InvalidPath,
        ),
        (
            vec![StateOp::Delete { path: vec![] }],
            ErrorCode::InvalidPath,
        ),
        (
            vec![
                set("2", 2),
                StateOp::Delete {
                    path: vec!["cells".into(), "1".into(), "x".into()],
                },
            ],
            ErrorCode::InvalidPath,
        ),
        (vec![set("big", "x".repeat(300))], ErrorCode::StateTooLarge),
    ];
    for (ops, code) in cases {
        h.update(a, "r", ops, None);
        assert_eq!(error_code(&out_a.take()), Some(code));
        assert_eq!(h.registry.rooms["r"].state, before);
        assert_eq!(h.registry.rooms["r"].version, 1);
    }
    let (b, out_b) = h.connect();
    h.update(b, "r", vec![set("2", 2)], None);
    assert_eq!(error_code(&out_b.take()), Some(ErrorCode::NotInRoom));
}

#[test]
fn a_state_over_max_state_values_is_refused_though_its_bytes_fit() {
    // limits(): 64 values and 256 bytes. Nils are one byte each, so only the count refuses.
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    h.create(a, Some("r"), RoomOptions::default());
    h.join(b, "r");
    out_a.take();
    out_b.take();
    let nils = |n| Value::Array(vec![Value::Nil; n]);
    // The root, "cells", its map, "k", the array and 59 nils: exactly 64.
    h.update(a, "r", vec![set("k", nils(59))], None);
    assert_eq!(error_code(&out_a.take()), None);
    assert_eq!(h.registry.rooms["r"].state.value_count(), 64);
    out_b.take();
    let before = h.registry.rooms["r"].state.clone();
    for ops in [
        vec![set("j", Value::Nil)],
        vec![set("k", nils(60))],
        vec![set("k", Value::Nil), set("j", nils(100))],
    ] {
        h.update(a, "r", ops, None);
        let frames = out_a.take();
        let ServerFrame::Error(err) = &frames[0] else {
            panic!("expected an error, got {frames:?}");
        };
        assert_eq!(err.code, ErrorCode::StateTooLarge);
        assert!(err.message.contains("max_state_values"), "{}", err.message);
        assert_eq!(h.registry.rooms["r"].state, before);
        assert_eq!(h.registry.rooms["r"].version, 1);
        assert!(out_b.take().is_empty(), "nothing reached the other member");
    }
    h.check();
}

#[test]
fn batched_patches_go_out_together_and_before_a_joiner_arrives() {
    let mut h = Harness::with_limits(RegistryLimits {
        batch_state_patches: true,
        ..limits()
    });
    let (a, out_a) = h.connect();
    h.create(a, Some("r"), RoomOptions::default());
    h.update(a, "r", vec![set("1", 1)], None);
    h.update(a, "r", vec![set("2", 2)], None);
    assert!(out_a
        .take()
        .iter()
        .all(|f| !matches!(f, ServerFrame::StatePatch(_))));
    h.registry.flush_state_patches();
    match &out_a.take()[..] {
        [ServerFrame::StatePatch(p)] => {
            assert_eq!(
                p.patches.iter().map(|p| p.version).collect::<Vec<_>>(),
                [1, 2]
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    h.update(a, "r", vec![set("3", 3)], None);
    out_a.take();
    let (b, _) = h.connect();
    h.try_join(b, "r", None);
    // The held patch reached `a` before `b` joined; `b`'s snapshot already has it.
    assert!(out_a
        .take()
        .iter()
        .any(|f| matches!(f, ServerFrame::StatePatch(_))));
    assert!(h.registry.rooms["r"].pending_patches.is_empty());
}

#[test]
fn lobby_updates_are_coalesced_filtered_and_shared() {
    let mut h = Harness::new();
    let (watcher, out_w) = h.connect();
    let (watcher2, out_w2) = h.connect();
    let (duel_watcher, out_d) = h.connect();
    for id in [watcher, watcher2] {
        h.run(
            id,
            ClientFrame::SubscribeLobby {
                reference: Some(1),
                filter: RoomFilter::default(),
            },
        );
    }
    h.run(
        duel_watcher,
        ClientFrame::SubscribeLobby {
            reference: Some(1),
            filter: RoomFilter {
                mode: Some("duel".into()),
                ..RoomFilter::default()
            },
        },
    );
    for out in [&out_w, &out_w2, &out_d] {
        assert!(matches!(
            &out.take()[..],
            [ServerFrame::RoomList {
                reference: Some(1),
                ..
            }]
        ));
    }
    let (a, _) = h.connect();
    let (b, _) = h.connect();
    h.create(
        a,
        Some("r"),
        RoomOptions {
            metadata: meta(&[("mode", "duel")]),
            ..seats(3)
        },
    );
    h.try_join(b, "r", None);
    h.run(
        a,
        ClientFrame::SetMetadata {
            reference: None,
            room: "r".into(),
            metadata: meta(&[("mode", "duel"), ("map", "dust")]),
        },
    );
    h.create(a, Some("gone"), RoomOptions::default());
    h.run(
        a,
        ClientFrame::Leave {
            reference: None,
            room: "gone".into(),
        },
    );
    h.registry.flush_lobby();
    // One frame for all of that: `r` once, as added, with its latest members and metadata;
    // `gone` came and went within the interval, so it is not mentioned.
    let frames = lobby_frames(out_w.take());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].added.len(), 1);
    let info = &frames[0].added[0];
    assert_eq!(
        (info.members, info.metadata.get("map")),
        (2, Some(&Value::from("dust")))
    );
    assert!(frames[0].changed.is_empty() && frames[0].removed.is_empty());
    assert_eq!(lobby_frames(out_w2.take()), frames);
    assert_eq!(lobby_frames(out_d.take()).len(), 1);
    // Subscribers with equal filters share one encoded buffer.
    h.registry.disconnect(b, LeaveReason::Closed);
    h.registry.flush_lobby();
    let w = out_w.frames.borrow().clone();
    let w2 = out_w2.frames.borrow().clone();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].as_ptr(), w2[0].as_ptr());
    // A flush with nothing new sends nothing; an unsubscribed session hears nothing more.
    out_w.take();
    out_w2.take();
    h.registry.flush_lobby();
    assert!(out_w.take().is_empty());
    h.run(watcher, ClientFrame::UnsubscribeLobby { reference: None });
    h.run(
        a,
        ClientFrame::Leave {
            reference: None,
            room: "r".into(),
        },
    );
    h.registry.flush_lobby();
    assert!(lobby_frames(out_w.take()).is_empty());
    assert_eq!(lobby_frames(out_w2.take())[0].removed, ["r"]);
}

#[test]
fn a_burst_of_lobby_changes_goes_out_in_bounded_frames_each_room_in_turn() {
    // Issue 12: rooms churning with large metadata made lobby frames 13 times max_frame_bytes.
    const BUDGET: usize = 512;
    let mut h = Harness::with_limits(RegistryLimits {
        lobby_frame_bytes: BUDGET,
        max_rooms_per_session: 64,
        ..limits()
    });
    let (watcher, out) = h.connect();
    h.run(
        watcher,
        ClientFrame::SubscribeLobby {
            reference: None,
            filter: RoomFilter::default(),
        },
    );
    out.take();
    let (owner, _) = h.connect();
    let names: Vec<String> = (0..30).map(|i| format!("r{i:02}")).collect();
    let big = meta(&[("blob", &"x".repeat(40))]);
    for name in &names {
        h.create(
            owner,
            Some(name),
            RoomOptions {
                metadata: big.clone(),
                ..RoomOptions::default()
            },
        );
    }
    let mut heard = Vec::new();
    let mut last_r00 = None;
    for flush in 0.. {
        assert!(flush < 30, "the backlog never drains");
        h.registry.flush_lobby();
        let bytes = out.frames.borrow().iter().map(Bytes::len).sum::<usize>();
        let frames = lobby_frames(out.take());
        if frames.is_empty() {
            break;
        }
        assert_eq!(frames.len(), 1);
        assert!(bytes <= BUDGET + 64, "a lobby frame of {bytes} bytes");
        heard.extend(frames[0].added.iter().map(|i| i.room.clone()));
        last_r00 = frames[0]
            .changed
            .iter()
            .find(|i| i.room == "r00")
            .map(|i| i.metadata.clone())
            .or(last_r00);
        // A room that keeps changing while the backlog drains is heard in its turn, each time
        // with what it is by then, and holds up no other room.
        if flush < 3 {
            h.run(
                owner,
                ClientFrame::SetMetadata {
                    reference: None,
                    room: "r00".into(),
                    metadata: meta(&[("blob", &format!("{flush:040}"))]),
                },
            );
        }
    }
    heard.sort();
    assert_eq!(heard, names, "every room is heard of once, as added");
    assert_eq!(last_r00, Some(meta(&[("blob", &format!("{:040}", 2))])));
}

#[test]
fn rooms_that_change_all_the_time_do_not_starve_the_lobby_of_the_others() {
    let mut h = Harness::with_limits(RegistryLimits {
        lobby_frame_bytes: 512,
        max_rooms_per_session: 64,
        ..limits()
    });
    let (watcher, out) = h.connect();
    h.run(
        watcher,
        ClientFrame::SubscribeLobby {
            reference: None,
            filter: RoomFilter::default(),
        },
    );
    let (owner, _) = h.connect();
    for i in 0..30 {
        h.create(owner, Some(&format!("r{i:02}")), RoomOptions::default());
    }
    // Every room has been heard of once the backlog of their creation drains.
    while !lobby_frames(out.take()).is_empty() || !h.registry.lobby.is_idle() {
        h.registry.flush_lobby();
    }
    // The first twelve rooms change before every flush: more than one frame holds.
    let mut heard_last = false;
    for round in 0..20 {
        for i in 0..12 {
            h.run(
                owner,
                ClientFrame::SetMetadata {
                    reference: None,
                    room: format!("r{i:02}"),
                    metadata: meta(&[("round", &format!("{round:030}"))]),
                },
            );
        }
        if round == 0 {
            h.run(
                owner,
                ClientFrame::SetMetadata {
                    reference: None,
                    room: "r29".into(),
                    metadata: meta(&[("round", "once")]),
                },
            );
        }
        h.registry.flush_lobby();
        heard_last |= lobby_frames(out.take())
            .iter()
            .any(|f| f.changed.iter().any(|i| i.room == "r29"));
    }
    assert!(heard_last, "r29 waited behind the busy rooms for ever");
}

#[test]
fn a_full_room_and_one_locked_by_its_owner_are_told_apart() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    let (watcher, _) = h.connect();
    h.create(a, Some("r"), seats(2));
    let joined = h.try_join(b, "r", None).into_iter().find_map(|f| match f {
        ServerFrame::Joined(j) => Some(j),
        _ => None,
    });
    // Full: closed to newcomers, but not by its owner, so `unlock` has nothing to undo.
    assert!(matches!(joined, Some(j) if j.locked && !j.locked_by_owner));
    let update = out_a.take().into_iter().find_map(|f| match f {
        ServerFrame::RoomUpdate(u) => Some(u),
        _ => None,
    });
    assert!(matches!(update, Some(u) if u.locked && !u.locked_by_owner));
    let info = &h.registry.all_rooms(10)[0];
    assert!(info.info.locked && !info.info.locked_by_owner);
    // Locked by the owner too: both say so, in room_update, joined and room info alike.
    h.run(
        a,
        ClientFrame::Lock {
            reference: None,
            room: "r".into(),
        },
    );
    let update = out_b.take().into_iter().find_map(|f| match f {
        ServerFrame::RoomUpdate(u) => Some(u),
        _ => None,
    });
    assert!(matches!(update, Some(u) if u.locked && u.locked_by_owner));
    let info = &h.registry.all_rooms(10)[0];
    assert!(info.info.locked && info.info.locked_by_owner);
    assert!(h.list(watcher, RoomFilter::default())[0].locked_by_owner);
}

#[test]
fn join_without_create_joins_only_a_room_that_exists() {
    let mut h = Harness::new();
    let (a, _) = h.connect();
    let (b, out_b) = h.connect();
    let join_existing = |room: &str| ClientFrame::Join {
        reference: Some(7),
        room: room.into(),
        password: None,
        create: false,
    };
    h.run(b, join_existing("r"));
    assert_eq!(error_code(&out_b.take()), Some(ErrorCode::RoomNotFound));
    assert!(!h.registry.rooms.contains_key("r"), "a room was made");
    h.create(a, Some("r"), RoomOptions::default());
    h.run(b, join_existing("r"));
    assert!(out_b
        .take()
        .iter()
        .any(|f| matches!(f, ServerFrame::Joined(j) if j.room == "r")));
}

#[test]
fn metadata_with_a_map_key_that_is_not_a_string_is_refused_everywhere() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let keyed = |key: Value| -> Metadata {
        Metadata::from([(
            "m".to_owned(),
            Value::Array(vec![Value::Map(vec![(key, Value::from(1))])]),
        )])
    };
    let bad = [
        keyed(Value::Nil),
        keyed(Value::from(1)),
        keyed(Value::Binary(vec![1])),
        keyed(Value::Array(vec![])),
        keyed(Value::Map(vec![])),
    ];
    for metadata in bad {
        let options = RoomOptions {
            metadata: metadata.clone(),
            ..RoomOptions::default()
        };
        h.run(
            a,
            ClientFrame::Create {
                reference: Some(1),
                room: Some("r".into()),
                options: options.clone(),
            },
        );
        assert_eq!(error_code(&out_a.take()), Some(ErrorCode::InvalidOptions));
        h.run(
            a,
            ClientFrame::JoinOrCreate {
                reference: Some(1),
                filter: RoomFilter::default(),
                options,
            },
        );
        assert_eq!(error_code(&out_a.take()), Some(ErrorCode::InvalidOptions));
        // A filter's metadata becomes the metadata of the room matchmaking makes.
        h.run(
            a,
            ClientFrame::JoinOrCreate {
                reference: Some(1),
                filter: RoomFilter {
                    metadata: metadata.clone(),
                    ..RoomFilter::default()
                },
                options: RoomOptions::default(),
            },
        );
        assert_eq!(error_code(&out_a.take()), Some(ErrorCode::InvalidOptions));
        assert_eq!(h.registry.room_count(), 0);
    }
    // String keys, at any depth, are metadata like any other; and the owner's set_metadata
    // is held to the same rule.
    let nested = keyed(Value::from("k"));
    h.create(
        a,
        Some("r"),
        RoomOptions {
            metadata: nested.clone(),
            ..RoomOptions::default()
        },
    );
    out_a.take();
    h.run(
        a,
        ClientFrame::SetMetadata {
            reference: Some(1),
            room: "r".into(),
            metadata: keyed(Value::Nil),
        },
    );
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::InvalidOptions));
    assert_eq!(h.list(a, RoomFilter::default())[0].metadata, nested);
}
