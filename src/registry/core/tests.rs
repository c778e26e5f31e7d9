//! Unit tests of the registry state machine, driven directly with recording outlets.

use std::cell::RefCell;
use std::rc::Rc;

use parlor_protocol::{
    decode_server, ClientFrame, ErrorCode, LeaveReason, PresenceStatus, ServerFrame, SessionId,
    Value,
};

use super::*;

#[derive(Clone, Default)]
struct Recorder {
    frames: Rc<RefCell<Vec<Bytes>>>,
    evicted: Rc<RefCell<Option<Close>>>,
    /// Frames it accepts before overflowing; `None` is unlimited.
    capacity: Option<usize>,
}

impl Outlet for Recorder {
    fn deliver(&self, frame: Bytes) -> Result<(), Overflow> {
        let mut frames = self.frames.borrow_mut();
        if self.capacity.is_some_and(|cap| frames.len() >= cap) {
            return Err(Overflow);
        }
        frames.push(frame);
        Ok(())
    }
    fn close(&self, why: Close) {
        *self.evicted.borrow_mut() = Some(why);
    }
}

impl Recorder {
    fn take(&self) -> Vec<ServerFrame> {
        self.frames
            .borrow_mut()
            .drain(..)
            .map(|b| decode_server(&b, 64).unwrap())
            .collect()
    }
}

fn limits() -> RegistryLimits {
    RegistryLimits {
        max_rooms_per_session: 3,
        max_members_per_room: 3,
        max_room_name_bytes: 8,
        max_event_name_bytes: 8,
        max_rooms: 64,
        max_state_bytes: 256,
        max_state_values: 64,
        max_metadata_bytes: 64,
        max_listed_rooms: 50,
        lobby_frame_bytes: 16_384,
        batch_state_patches: false,
        max_patch_batch_bytes: 1024,
        reconnect_grace: std::time::Duration::ZERO,
        history_frames: 8,
        history_bytes: 4096,
        replay_budget_bytes: 4096,
        max_away_sessions: 4,
    }
}

struct Harness {
    registry: Registry<Recorder>,
}

impl Harness {
    /// Takes the frames queued for session `id` so far (which must be connected, not away).
    fn frames_of(&self, id: SessionId) -> Vec<ServerFrame> {
        self.registry.sessions[&id].outlet.as_ref().unwrap().take()
    }

    fn check(&self) {
        self.registry.check_invariants().unwrap();
    }

    fn new() -> Self {
        Self::with_limits(limits())
    }
    fn with_limits(limits: RegistryLimits) -> Self {
        Self {
            registry: Registry::new(limits),
        }
    }
    fn connect(&mut self) -> (SessionId, Recorder) {
        self.connect_with(None)
    }
    fn connect_with(&mut self, capacity: Option<usize>) -> (SessionId, Recorder) {
        let id = SessionId::new_random();
        let outlet = Recorder {
            capacity,
            ..Recorder::default()
        };
        self.registry.connect(id, outlet.clone());
        (id, outlet)
    }
    fn run(&mut self, id: SessionId, frame: ClientFrame) {
        self.registry.handle(id, frame);
        self.registry.check_invariants().unwrap();
    }
    fn join(&mut self, id: SessionId, room: &str) {
        self.run(
            id,
            ClientFrame::Join {
                reference: Some(1),
                room: room.into(),
                password: None,
                create: true,
            },
        );
    }
}

fn emit(room: &str, echo: bool) -> ClientFrame {
    ClientFrame::Emit {
        reference: Some(7),
        room: room.into(),
        event: "move".into(),
        data: Value::from(42),
        echo,
    }
}

fn error_code(frames: &[ServerFrame]) -> Option<ErrorCode> {
    frames.iter().find_map(|f| match f {
        ServerFrame::Error(e) => Some(e.code),
        _ => None,
    })
}

#[test]
fn join_lists_members_in_join_order_and_tells_the_others() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    h.join(a, "r");
    out_a.take();
    h.join(b, "r");
    let b_frames = out_b.take();
    match &b_frames[0] {
        ServerFrame::Joined(j) => {
            assert_eq!((j.reference, &j.room[..]), (Some(1), "r"));
            assert_eq!(j.members, vec![a, b]);
            assert_eq!(j.owner, Some(a));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        b_frames[1],
        ServerFrame::Ok {
            reference: 1,
            data: None,
        }
    );
    assert_eq!(b_frames.len(), 2);
    match &out_a.take()[..] {
        [ServerFrame::Presence(p)] => {
            assert_eq!(
                (p.session, p.status, p.reason),
                (b, PresenceStatus::Joined, None)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn emit_excludes_the_sender_unless_echo_and_counts_offsets() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    out_a.take();
    out_b.take();
    h.run(a, emit("r", false));
    assert_eq!(
        out_a.take(),
        vec![ServerFrame::Ok {
            reference: 7,
            data: None,
        }]
    );
    match &out_b.take()[..] {
        [ServerFrame::Event(e)] => {
            // Offsets 0 and 1 are the two `joined` presences: every room frame takes one.
            assert_eq!((e.from, e.offset, e.data.clone()), (a, 2, Value::from(42)));
        }
        other => panic!("unexpected {other:?}"),
    }
    h.run(a, emit("r", true));
    let a_frames = out_a.take();
    assert!(matches!(&a_frames[0], ServerFrame::Event(e) if e.offset == 3));
    assert!(matches!(&out_b.take()[0], ServerFrame::Event(e) if e.offset == 3));
}

#[test]
fn emit_shares_one_buffer_among_recipients() {
    let mut h = Harness::new();
    let (a, _) = h.connect();
    let (b, out_b) = h.connect();
    let (c, out_c) = h.connect();
    for id in [a, b, c] {
        h.join(id, "r");
    }
    out_b.take();
    out_c.take();
    h.run(a, emit("r", false));
    let (fb, fc) = (
        out_b.frames.borrow()[0].clone(),
        out_c.frames.borrow()[0].clone(),
    );
    assert_eq!(
        fb.as_ptr(),
        fc.as_ptr(),
        "recipients must share the encoded frame"
    );
}

#[test]
fn emit_to_a_room_not_joined_is_refused() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, _) = h.connect();
    h.join(b, "r");
    h.run(a, emit("r", false));
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::NotInRoom));
    h.run(a, emit("nowhere", false));
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::NotInRoom));
}

#[test]
fn names_are_checked_at_and_over_their_bounds() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    h.join(a, "12345678");
    assert!(matches!(out_a.take()[0], ServerFrame::Joined(_)));
    for bad in ["", "123456789"] {
        h.join(a, bad);
        assert_eq!(error_code(&out_a.take()), Some(ErrorCode::InvalidRoom));
    }
    for (event, code) in [
        ("12345678", None),
        ("", Some(ErrorCode::InvalidEvent)),
        ("123456789", Some(ErrorCode::InvalidEvent)),
    ] {
        h.run(
            a,
            ClientFrame::Emit {
                reference: None,
                room: "12345678".into(),
                event: event.into(),
                data: Value::Nil,
                echo: false,
            },
        );
        assert_eq!(error_code(&out_a.take()), code);
    }
}

#[test]
fn room_and_membership_limits_hold_at_and_over_the_bound() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    for room in ["1", "2", "3"] {
        h.join(a, room);
    }
    out_a.take();
    h.join(a, "4");
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::TooManyRooms));
    h.join(a, "1");
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::AlreadyJoined));

    let (b, _) = h.connect();
    let (c, _) = h.connect();
    let (d, out_d) = h.connect();
    h.join(b, "1");
    h.join(c, "1");
    h.join(d, "1");
    assert_eq!(error_code(&out_d.take()), Some(ErrorCode::RoomFull));
    h.run(
        c,
        ClientFrame::Leave {
            reference: None,
            room: "1".into(),
        },
    );
    h.join(d, "1");
    assert!(matches!(out_d.take()[0], ServerFrame::Joined(_)));
}

#[test]
fn leave_tells_the_leaver_and_the_others_and_drops_empty_rooms() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    out_a.take();
    out_b.take();
    h.run(
        a,
        ClientFrame::Leave {
            reference: Some(3),
            room: "r".into(),
        },
    );
    assert_eq!(
        out_a.take(),
        vec![
            ServerFrame::Left {
                room: "r".into(),
                reason: LeaveReason::Leave
            },
            ServerFrame::Ok {
                reference: 3,
                data: None
            }
        ]
    );
    // `a` owned the room, so `b` also hears that it owns it now.
    assert!(matches!(
        &out_b.take()[..],
        [ServerFrame::Presence(p), ServerFrame::RoomUpdate(u)]
            if p.session == a && p.reason == Some(LeaveReason::Leave) && u.owner == Some(b)
    ));
    h.run(
        a,
        ClientFrame::Leave {
            reference: Some(4),
            room: "r".into(),
        },
    );
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::NotInRoom));
    h.run(
        b,
        ClientFrame::Leave {
            reference: None,
            room: "r".into(),
        },
    );
    assert_eq!(h.registry.room_count(), 0);
}

#[test]
fn disconnect_leaves_every_room_with_the_reason_and_forgets_the_session() {
    let mut h = Harness::new();
    let (a, _) = h.connect();
    let (b, out_b) = h.connect();
    let (c, out_c) = h.connect();
    h.join(a, "x");
    h.join(a, "y");
    h.join(b, "x");
    h.join(c, "y");
    out_b.take();
    out_c.take();
    h.registry.disconnect(a, LeaveReason::Timeout);
    h.registry.check_invariants().unwrap();
    for out in [&out_b, &out_c] {
        assert!(matches!(
            &out.take()[..],
            [ServerFrame::Presence(p), ServerFrame::RoomUpdate(_)]
                if p.session == a && p.reason == Some(LeaveReason::Timeout)
        ));
    }
    assert_eq!(h.registry.session_count(), 2);
    h.registry.disconnect(b, LeaveReason::Closed);
    h.registry.disconnect(c, LeaveReason::Dropped);
    h.registry.disconnect(c, LeaveReason::Dropped); // twice is harmless
    assert_eq!(
        (h.registry.session_count(), h.registry.room_count()),
        (0, 0)
    );
}

#[test]
fn direct_send_reaches_only_a_session_sharing_a_room() {
    let mut h = Harness::new();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    let (c, _) = h.connect();
    h.join(a, "r");
    h.join(b, "r");
    h.join(c, "other");
    out_a.take();
    out_b.take();
    let send = |to| ClientFrame::Send {
        reference: Some(9),
        to,
        event: "hi".into(),
        data: Value::from("x"),
    };
    h.run(a, send(b));
    assert_eq!(
        out_a.take(),
        vec![ServerFrame::Ok {
            reference: 9,
            data: None,
        }]
    );
    assert!(
        matches!(&out_b.take()[..], [ServerFrame::Direct(d)] if d.from == a && d.event == "hi")
    );
    h.run(a, send(c));
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::UnknownSession));
    h.run(a, send(SessionId::new_random()));
    assert_eq!(error_code(&out_a.take()), Some(ErrorCode::UnknownSession));
}

#[test]
fn an_overflowing_member_is_evicted_as_slow_consumer_and_the_rest_keep_receiving() {
    // Roomy enough that the third join does not fill (and so lock) the room.
    let mut h = Harness::with_limits(RegistryLimits {
        max_members_per_room: 10,
        ..limits()
    });
    let (a, out_a) = h.connect();
    let (slow, out_slow) = h.connect_with(Some(3));
    let (b, out_b) = h.connect();
    h.join(a, "r");
    h.join(slow, "r"); // joined + ok: 2 frames of 3
    h.join(b, "r"); // presence: 3 of 3
    out_a.take();
    out_b.take();
    h.run(a, emit("r", false));
    h.registry.check_invariants().unwrap();
    assert_eq!(
        *out_slow.evicted.borrow(),
        Some(Close::Evicted(LeaveReason::SlowConsumer))
    );
    assert_eq!(h.registry.session_count(), 2);
    let b_frames = out_b.take();
    assert!(matches!(&b_frames[0], ServerFrame::Event(_)));
    assert!(
        matches!(&b_frames[1], ServerFrame::Presence(p) if p.session == slow && p.reason == Some(LeaveReason::SlowConsumer))
    );
    h.run(a, emit("r", false));
    assert_eq!(out_b.take().len(), 1);
}

#[test]
fn requests_from_unknown_sessions_are_ignored() {
    let mut h = Harness::new();
    h.run(SessionId::new_random(), emit("r", false));
    assert_eq!(
        (h.registry.session_count(), h.registry.room_count()),
        (0, 0)
    );
}

mod logic_pool;
mod props;
mod resume;
mod rooms;
