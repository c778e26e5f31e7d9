//! Bad input: one case per class. Each gets its documented error code and leaves the session
//! usable with its rooms intact, or closes it with the documented close code.

use parlor_client::protocol::{
    close, encode_client, encode_map, ClientFrame, ErrorCode, ServerFrame, Value,
};
use parlor_client::tungstenite::protocol::frame::coding::{Data, OpCode};
use parlor_client::tungstenite::protocol::frame::Frame;
use parlor_client::tungstenite::Message;
use parlor_client::Client;

use crate::common::*;

/// Sends `message` and returns the error frame it causes.
async fn error_for(client: &mut Client, message: Message) -> (Option<u64>, ErrorCode) {
    client.send_message(message).await.unwrap();
    match next_matching(client, "error", |f| matches!(f, ServerFrame::Error(_))).await {
        ServerFrame::Error(e) => (e.reference, e.code),
        _ => unreachable!(),
    }
}

fn binary(bytes: impl Into<bytes::Bytes>) -> Message {
    Message::Binary(bytes.into())
}

/// A client in room "home" with a peer there, to check that rooms survive each error.
async fn setup() -> (parlor::BackgroundNode, Client, Client) {
    let node = start(test_config());
    let (mut client, mut peer) = (connect(&node).await, connect(&node).await);
    peer.join("home").await.unwrap();
    client.join("home").await.unwrap();
    (node, client, peer)
}

async fn assert_rooms_intact(client: &mut Client, peer: &mut Client) {
    client
        .emit("home", "still", Value::Nil, false)
        .await
        .expect("emit to home");
    next_matching(
        peer,
        "event from home",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "still"),
    )
    .await;
}

#[tokio::test]
async fn non_fatal_bad_input_gets_its_error_code_and_loses_nothing() {
    let (_node, mut client, mut peer) = setup().await;
    let join = encode_client(&ClientFrame::Join {
        reference: Some(1),
        room: "x".into(),
        password: None,
        create: true,
    })
    .to_vec();
    let mut deep = Value::from(0);
    for _ in 0..40 {
        deep = Value::Array(vec![deep]);
    }
    let cases: Vec<(&str, Message, Option<u64>, ErrorCode)> = vec![
        (
            "text frame",
            Message::Text("{\"type\":\"join\"}".into()),
            None,
            ErrorCode::TextFrame,
        ),
        (
            "not MessagePack",
            binary(vec![0xc1, 0x00, 0x01]),
            None,
            ErrorCode::Malformed,
        ),
        (
            "truncated",
            binary(join[..join.len() - 1].to_vec()),
            None,
            ErrorCode::Malformed,
        ),
        (
            "trailing bytes",
            binary([join.clone(), vec![0x00]].concat()),
            None,
            ErrorCode::Malformed,
        ),
        ("not a map", binary(vec![0x2a]), None, ErrorCode::NotAMap),
        (
            "unknown type",
            binary(encode_map(&[
                ("type", Value::from("dance")),
                ("ref", Value::from(5)),
            ])),
            Some(5),
            ErrorCode::UnknownType,
        ),
        (
            "missing field",
            binary(encode_map(&[
                ("type", Value::from("join")),
                ("ref", Value::from(6)),
            ])),
            Some(6),
            ErrorCode::InvalidField,
        ),
        (
            "ill-typed field",
            binary(encode_map(&[
                ("type", Value::from("join")),
                ("ref", Value::from(7)),
                ("room", Value::from(42)),
            ])),
            Some(7),
            ErrorCode::InvalidField,
        ),
        (
            "missing type",
            binary(encode_map(&[("room", Value::from("x"))])),
            None,
            ErrorCode::InvalidField,
        ),
        (
            "too deep",
            binary(encode_map(&[
                ("type", Value::from("emit")),
                ("ref", Value::from(8)),
                ("room", Value::from("home")),
                ("event", Value::from("e")),
                ("data", deep),
            ])),
            Some(8),
            ErrorCode::TooDeep,
        ),
        (
            "empty room name",
            binary(
                encode_client(&ClientFrame::Join {
                    reference: Some(9),
                    room: "".into(),
                    password: None,
                    create: true,
                })
                .to_vec(),
            ),
            Some(9),
            ErrorCode::InvalidRoom,
        ),
        (
            "room name too long",
            binary(
                encode_client(&ClientFrame::Join {
                    reference: Some(10),
                    room: "r".repeat(129),
                    password: None,
                    create: true,
                })
                .to_vec(),
            ),
            Some(10),
            ErrorCode::InvalidRoom,
        ),
        (
            "emit to a room not joined",
            binary(
                encode_client(&ClientFrame::Emit {
                    reference: Some(11),
                    room: "elsewhere".into(),
                    event: "e".into(),
                    data: Value::Nil,
                    echo: false,
                })
                .to_vec(),
            ),
            Some(11),
            ErrorCode::NotInRoom,
        ),
        (
            "direct send to an unknown session",
            binary(
                encode_client(&ClientFrame::Send {
                    reference: Some(12),
                    to: parlor_client::protocol::SessionId::new_random(),
                    event: "e".into(),
                    data: Value::Nil,
                })
                .to_vec(),
            ),
            Some(12),
            ErrorCode::UnknownSession,
        ),
    ];
    for (i, (name, message, reference, code)) in cases.into_iter().enumerate() {
        assert_eq!(
            error_for(&mut client, message).await,
            (reference, code),
            "case: {name}"
        );
        assert_rooms_intact(&mut client, &mut peer).await;
        assert_usable(&mut client, &format!("after-{i}")).await;
    }
}

#[tokio::test]
async fn fragmented_binary_messages_are_reassembled() {
    let (_node, mut client, _peer) = setup().await;
    let join = encode_client(&ClientFrame::Join {
        reference: Some(3),
        room: "frag".into(),
        password: None,
        create: true,
    })
    .to_vec();
    let (first, rest) = join.split_at(4);
    client
        .send_message(Message::Frame(Frame::message(
            first.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await
        .unwrap();
    client
        .send_message(Message::Frame(Frame::message(
            rest.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    let frame = next_matching(&mut client, "joined", |f| {
        matches!(f, ServerFrame::Joined(_))
    })
    .await;
    assert!(matches!(frame, ServerFrame::Joined(j) if j.room == "frag"));
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_others_do_not_notice() {
    let (node, mut client, mut peer) = setup().await;
    let _ = client.send_message(binary(vec![0x90; 65_537])).await;
    let close = within(5, "close", client.wait_closed())
        .await
        .expect("close frame");
    assert_eq!(u16::from(close.code), close::MESSAGE_TOO_BIG);
    // The peer sees the session leave with reason protocol_error and keeps working.
    let frame = next_matching(&mut peer, "presence left", |f| {
        matches!(f, ServerFrame::Presence(p) if p.status == parlor_client::protocol::PresenceStatus::Left)
    })
    .await;
    assert!(
        matches!(&frame, ServerFrame::Presence(p) if p.reason == Some(parlor_client::protocol::LeaveReason::ProtocolError)),
        "{frame:?}"
    );
    assert_usable(&mut peer, "fine").await;
    wait_health(&node, (1, 2), 5).await;
}

#[tokio::test]
async fn a_continuation_without_a_start_closes_with_1002() {
    let (_node, mut client, _peer) = setup().await;
    let _ = client
        .send_message(Message::Frame(Frame::message(
            vec![0x80],
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    let close = within(5, "close", client.wait_closed())
        .await
        .expect("close frame");
    assert_eq!(u16::from(close.code), close::PROTOCOL_ERROR);
}

#[tokio::test]
async fn create_with_options_written_as_an_array_is_an_invalid_field_and_makes_no_room() {
    // serde would read `[1]` as RoomOptions { max_members: 1 }, positionally.
    let (node, mut client, _peer) = setup().await;
    let before = health(&node).await;
    let positional = encode_map(&[
        ("type", Value::from("create")),
        ("ref", Value::from(21)),
        ("room", Value::from("positional")),
        ("options", Value::Array(vec![Value::from(1)])),
    ]);
    assert_eq!(
        error_for(&mut client, binary(positional)).await,
        (Some(21), ErrorCode::InvalidField)
    );
    assert_eq!(health(&node).await, before, "no room was made");
    // The name is still free, and the same options as a map make the room.
    let joined = client
        .create(
            Some("positional"),
            parlor_client::protocol::RoomOptions {
                max_members: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("create with options as a map");
    assert_eq!(joined.max_members, 1);
}
