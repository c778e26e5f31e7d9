//! Rooms: emit routing and echo, presence, `joined` lists, acknowledgements, direct sends.

use parlor_client::protocol::{
    encode_map, ClientFrame, ErrorCode, LeaveReason, PresenceStatus, ServerFrame, SessionId, Value,
};

use crate::common::*;

#[tokio::test]
async fn emit_reaches_the_room_but_not_the_sender_nor_other_rooms() {
    let node = start(test_config());
    let (mut a, mut b, mut c) = (
        connect(&node).await,
        connect(&node).await,
        connect(&node).await,
    );
    a.join("game").await.unwrap();
    b.join("game").await.unwrap();
    c.join("elsewhere").await.unwrap();

    a.emit("game", "move", Value::from(7), false).await.unwrap();
    let frame = next_matching(&mut b, "event", |f| matches!(f, ServerFrame::Event(_))).await;
    let ServerFrame::Event(event) = frame else {
        unreachable!()
    };
    assert_eq!(
        (event.room.as_str(), event.from, event.event.as_str()),
        ("game", a.session_id(), "move")
    );
    assert_eq!(event.data, Value::from(7));

    // With echo, the sender hears it too. Its first event must be the echo, not the first emit.
    a.emit("game", "move", Value::from(8), true).await.unwrap();
    let echo = next_matching(&mut a, "echo", |f| matches!(f, ServerFrame::Event(_))).await;
    // Offsets count every room frame: two `joined` presences, then the first event.
    assert!(matches!(echo, ServerFrame::Event(e) if e.data == Value::from(8) && e.offset == 3));
    assert!(matches!(next(&mut b).await, ServerFrame::Event(e) if e.data == Value::from(8)));

    // The other room saw none of it: its first frame is its own marker.
    c.emit("elsewhere", "marker", Value::Nil, true)
        .await
        .unwrap();
    assert!(matches!(next(&mut c).await, ServerFrame::Event(e) if e.event == "marker"));
}

#[tokio::test]
async fn a_session_in_several_rooms_gets_each_rooms_events() {
    let node = start(test_config());
    let (mut a, mut b, mut hub) = (
        connect(&node).await,
        connect(&node).await,
        connect(&node).await,
    );
    hub.join("one").await.unwrap();
    hub.join("two").await.unwrap();
    a.join("one").await.unwrap();
    b.join("two").await.unwrap();
    a.emit("one", "e", Value::from(1), false).await.unwrap();
    b.emit("two", "e", Value::from(2), false).await.unwrap();
    let mut rooms = Vec::new();
    while rooms.len() < 2 {
        if let ServerFrame::Event(e) = next(&mut hub).await {
            rooms.push((e.room, e.from));
        }
    }
    rooms.sort();
    assert_eq!(
        rooms,
        vec![
            ("one".into(), a.session_id()),
            ("two".into(), b.session_id())
        ]
    );
}

#[tokio::test]
async fn presence_and_joined_carry_ids_and_reasons() {
    let node = start(test_config());
    let (mut a, mut b, c) = (
        connect(&node).await,
        connect(&node).await,
        connect(&node).await,
    );
    assert_eq!(a.join("r").await.unwrap(), vec![a.session_id()]);
    assert_eq!(
        b.join("r").await.unwrap(),
        vec![a.session_id(), b.session_id()]
    );
    let joined = next(&mut a).await;
    assert!(matches!(joined, ServerFrame::Presence(p)
        if p.session == b.session_id() && p.status == PresenceStatus::Joined && p.reason.is_none() && p.room == "r"));

    let mut c = c;
    c.join("r").await.unwrap();
    next(&mut a).await; // c joined
    b.leave("r").await.unwrap();
    let left = next(&mut a).await;
    assert!(matches!(left, ServerFrame::Presence(p)
        if p.session == b.session_id() && p.status == PresenceStatus::Left && p.reason == Some(LeaveReason::Leave)));
    let c_id = c.session_id();
    c.close().await.unwrap();
    let closed = next(&mut a).await;
    assert!(
        matches!(closed, ServerFrame::Presence(p) if p.session == c_id && p.reason == Some(LeaveReason::Closed))
    );
}

#[tokio::test]
async fn every_request_with_a_ref_gets_exactly_one_answer_with_that_ref() {
    let node = start(test_config());
    let (mut a, mut b) = (connect(&node).await, connect(&node).await);
    b.join("r").await.unwrap();
    let stranger = SessionId::new_random();
    let requests = vec![
        ClientFrame::Join {
            reference: Some(10),
            room: "r".into(),
            password: None,
            create: true,
        },
        ClientFrame::Join {
            reference: Some(11),
            room: "r".into(),
            password: None,
            create: true,
        }, // already_joined
        ClientFrame::Emit {
            reference: Some(12),
            room: "r".into(),
            event: "e".into(),
            data: Value::Nil,
            echo: false,
        },
        ClientFrame::Emit {
            reference: Some(13),
            room: "nope".into(),
            event: "e".into(),
            data: Value::Nil,
            echo: false,
        },
        ClientFrame::Send {
            reference: Some(14),
            to: b.session_id(),
            event: "d".into(),
            data: Value::Nil,
        },
        ClientFrame::Send {
            reference: Some(15),
            to: stranger,
            event: "d".into(),
            data: Value::Nil,
        },
        ClientFrame::Leave {
            reference: Some(16),
            room: "r".into(),
        },
        ClientFrame::Leave {
            reference: Some(17),
            room: "r".into(),
        }, // not_in_room
        ClientFrame::Join {
            reference: Some(18),
            room: "".into(),
            password: None,
            create: true,
        }, // invalid_room
    ];
    for frame in &requests {
        a.send(frame).await.unwrap();
    }
    // A final request: once it is answered, every earlier answer has arrived.
    a.send(&ClientFrame::Join {
        reference: Some(99),
        room: "end".into(),
        password: None,
        create: true,
    })
    .await
    .unwrap();
    let mut answers = Vec::new();
    loop {
        match next(&mut a).await {
            ServerFrame::Ok { reference, .. } => answers.push((reference, None)),
            ServerFrame::Error(e) => {
                answers.push((e.reference.expect("error carries ref"), Some(e.code)))
            }
            _ => continue,
        }
        if answers.last().map(|(r, _)| *r) == Some(99) {
            break;
        }
    }
    assert_eq!(
        answers,
        vec![
            (10, None),
            (11, Some(ErrorCode::AlreadyJoined)),
            (12, None),
            (13, Some(ErrorCode::NotInRoom)),
            (14, None),
            (15, Some(ErrorCode::UnknownSession)),
            (16, None),
            (17, Some(ErrorCode::NotInRoom)),
            (18, Some(ErrorCode::InvalidRoom)),
            (99, None),
        ]
    );
}

#[tokio::test]
async fn direct_send_reaches_one_peer_and_is_refused_for_strangers() {
    let node = start(test_config());
    let (mut a, mut b, mut c) = (
        connect(&node).await,
        connect(&node).await,
        connect(&node).await,
    );
    a.join("r").await.unwrap();
    b.join("r").await.unwrap();
    c.join("other").await.unwrap();
    a.send_direct(b.session_id(), "psst", Value::from("hi"))
        .await
        .unwrap();
    let frame = next_matching(&mut b, "direct", |f| matches!(f, ServerFrame::Direct(_))).await;
    assert!(
        matches!(frame, ServerFrame::Direct(d) if d.from == a.session_id() && d.event == "psst" && d.data == Value::from("hi"))
    );

    // No shared room, or no such session: the same refusal, so sessions cannot be probed.
    let code = refused_code(a.send_direct(c.session_id(), "psst", Value::Nil).await);
    assert_eq!(code, ErrorCode::UnknownSession);
    let code = refused_code(
        a.send_direct(SessionId::new_random(), "psst", Value::Nil)
            .await,
    );
    assert_eq!(code, ErrorCode::UnknownSession);
    let code = refused_code(a.send_direct(b.session_id(), "", Value::Nil).await);
    assert_eq!(code, ErrorCode::InvalidEvent);
    // c got nothing: its first frame is its own echo.
    c.emit("other", "marker", Value::Nil, true).await.unwrap();
    assert!(matches!(next(&mut c).await, ServerFrame::Event(e) if e.event == "marker"));
}

#[tokio::test]
async fn sender_identity_is_stamped_by_the_server() {
    let node = start(test_config());
    let (mut a, mut b) = (connect(&node).await, connect(&node).await);
    a.join("r").await.unwrap();
    b.join("r").await.unwrap();
    // A client cannot claim an identity: a `from` field in its frame is not part of the
    // protocol and is ignored; the event carries the sender's real id.
    let forged = encode_map(&[
        ("type", Value::from("emit")),
        ("room", Value::from("r")),
        ("event", Value::from("e")),
        ("from", Value::from(b.session_id().to_string())),
    ]);
    a.send_message(parlor_client::tungstenite::Message::Binary(forged))
        .await
        .unwrap();
    let frame = next_matching(&mut b, "event", |f| matches!(f, ServerFrame::Event(_))).await;
    assert!(matches!(frame, ServerFrame::Event(e) if e.from == a.session_id()));
}

#[tokio::test]
async fn welcome_announces_the_limits_and_health_counts_sessions_and_rooms() {
    let node = start(test_config());
    let a = connect(&node).await;
    let w = a.welcome().clone();
    assert_eq!((w.protocol, w.heartbeat_ms, w.timeout_ms), (1, 200, 1_000));
    assert_eq!(w.limits.max_frame_bytes, 65_536);
    assert_eq!(w.limits.max_rooms_per_session, 16);
    let mut a = a;
    a.join("x").await.unwrap();
    assert_eq!(health(&node).await, (1, 1));
}

#[tokio::test]
async fn a_quiet_client_that_answers_pings_is_not_timed_out() {
    let node = start(test_config());
    let (mut quiet, mut other) = (connect(&node).await, connect(&node).await);
    other.join("r").await.unwrap();
    quiet.join("r").await.unwrap();
    next(&mut other).await; // quiet's presence
                            // Reading answers the server's pings; both send nothing for twice the client timeout.
    let window = std::time::Duration::from_millis(2_000);
    let (read, _) = tokio::join!(
        tokio::time::timeout(window, quiet.next_frame()),
        tokio::time::timeout(window, other.next_frame())
    );
    assert!(read.is_err(), "no frame expected while quiet: {read:?}");
    other.emit("r", "still", Value::Nil, false).await.unwrap();
    assert!(matches!(next(&mut quiet).await, ServerFrame::Event(e) if e.event == "still"));
}
