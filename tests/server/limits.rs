//! Limits from the configuration, each at and over its bound.

use parlor_client::protocol::{close, encode_client, ClientFrame, ErrorCode, ServerFrame, Value};
use parlor_client::tungstenite::Message;
use parlor_client::Client;

use crate::common::*;

/// An `emit` to `room` whose encoding is exactly `len` bytes (binary data padded to fit).
fn emit_of_len(room: &str, len: usize) -> Vec<u8> {
    let frame = |pad: usize| {
        encode_client(&ClientFrame::Emit {
            reference: Some(1),
            room: room.into(),
            event: "e".into(),
            data: Value::Binary(vec![0; pad]),
            echo: true,
        })
        .to_vec()
    };
    // The bin header grows with the pad, so search down from a first estimate.
    let mut pad = len.saturating_sub(frame(0).len());
    while frame(pad).len() > len {
        pad -= 1;
    }
    let bytes = frame(pad);
    assert_eq!(
        bytes.len(),
        len,
        "cannot build an emit of exactly {len} bytes"
    );
    bytes
}

#[tokio::test]
async fn a_frame_of_max_frame_bytes_is_accepted_and_one_byte_more_closes_with_1009() {
    let mut config = test_config();
    config.limits.max_frame_bytes = 4_096;
    config = with_budget(config, 64 * 1024);
    let node = start(config);
    let mut client = connect(&node).await;
    client.join("r").await.unwrap();
    client
        .send_message(Message::Binary(emit_of_len("r", 4_096).into()))
        .await
        .unwrap();
    let echo = next_matching(&mut client, "echo", |f| matches!(f, ServerFrame::Event(_))).await;
    assert!(matches!(echo, ServerFrame::Event(e) if e.event == "e"));
    let _ = client
        .send_message(Message::Binary(emit_of_len("r", 4_097).into()))
        .await;
    let close = within(5, "close", client.wait_closed())
        .await
        .expect("close frame");
    assert_eq!(u16::from(close.code), close::MESSAGE_TOO_BIG);
    wait_health(&node, (0, 0), 5).await;
}

#[tokio::test]
async fn rooms_per_session_at_and_over_the_bound() {
    let mut config = test_config();
    config.limits.max_rooms_per_session = 3;
    let node = start(config);
    let mut client = connect(&node).await;
    for room in ["a", "b", "c"] {
        client.join(room).await.unwrap();
    }
    assert_eq!(
        refused_code(client.join("d").await.map(|_| ())),
        ErrorCode::TooManyRooms
    );
    client.leave("a").await.unwrap();
    client.join("d").await.unwrap();
}

#[tokio::test]
async fn members_per_room_at_and_over_the_bound() {
    let mut config = test_config();
    config.limits.max_members_per_room = 3;
    let node = start(config);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&node).await;
        c.join("r").await.unwrap();
        clients.push(c);
    }
    let mut late = connect(&node).await;
    assert_eq!(
        refused_code(late.join("r").await.map(|_| ())),
        ErrorCode::RoomFull
    );
    clients.pop().unwrap().close().await.unwrap();
    // The seat frees once the registry has seen the close.
    within(5, "a free seat", async {
        while late.join("r").await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn room_and_event_name_lengths_at_and_over_the_bound() {
    let mut config = test_config();
    config.limits.max_room_name_bytes = 32; // the least allowed: server-made ids are 32
    config.limits.max_event_name_bytes = 5;
    let node = start(config);
    let mut client = connect(&node).await;
    client.join(&"r".repeat(32)).await.unwrap();
    assert_eq!(
        refused_code(client.join(&"r".repeat(33)).await.map(|_| ())),
        ErrorCode::InvalidRoom
    );
    // Multi-byte characters count in bytes: 11 × 3 bytes = 33 > 32.
    assert_eq!(
        refused_code(client.join(&"語".repeat(11)).await.map(|_| ())),
        ErrorCode::InvalidRoom
    );
    client
        .emit(&"r".repeat(32), "abcde", Value::Nil, false)
        .await
        .unwrap();
    let code = refused_code(
        client
            .emit(&"r".repeat(32), "abcdef", Value::Nil, false)
            .await,
    );
    assert_eq!(code, ErrorCode::InvalidEvent);
}

#[tokio::test]
async fn nesting_depth_at_and_over_the_bound() {
    let mut config = test_config();
    config.limits.max_depth = 5;
    let node = start(config);
    let mut client = connect(&node).await;
    client.join("r").await.unwrap();
    // The frame's map is level 1, so `data` may nest 4 deep.
    let nested = |levels: usize| {
        let mut value = Value::from(1);
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    };
    client.emit("r", "e", nested(4), false).await.unwrap();
    let code = refused_code(client.emit("r", "e", nested(5), false).await);
    assert_eq!(code, ErrorCode::TooDeep);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503_before_the_upgrade() {
    let mut config = test_config();
    config.limits.max_connections = 3;
    let node = start(config);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&node).await);
    }
    match Client::connect(&node.ws_url()).await {
        Err(parlor_client::ClientError::WebSocket(err)) => match *err {
            parlor_client::tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), 503)
            }
            other => panic!("expected HTTP 503, got {other}"),
        },
        other => panic!("expected HTTP 503, got {:?}", other.map(|c| c.session_id())),
    }
    clients.pop().unwrap().close().await.unwrap();
    within(5, "a free connection slot", async {
        loop {
            if Client::connect(&node.ws_url()).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_full_registry_mailbox_answers_overloaded_and_every_ref_still_gets_one_answer() {
    let mut config = test_config();
    config.registry.mailbox_capacity = 1;
    let node = start(config);
    let mut client = connect(&node).await;
    client.join("r").await.unwrap();
    // Pipeline requests without waiting: they arrive faster than one registry slot drains.
    const REQUESTS: u64 = 500;
    for reference in 1..=REQUESTS {
        let frame = ClientFrame::Emit {
            reference: Some(reference),
            room: "r".into(),
            event: "e".into(),
            data: Value::Nil,
            echo: false,
        };
        client.send(&frame).await.unwrap();
    }
    let mut answered = std::collections::HashMap::new();
    let (mut ok, mut overloaded) = (0, 0);
    while (answered.len() as u64) < REQUESTS {
        let (reference, code) = match next(&mut client).await {
            ServerFrame::Ok { reference } => (reference, None),
            ServerFrame::Error(e) => (e.reference.expect("ref"), Some(e.code)),
            _ => continue,
        };
        assert!(
            answered.insert(reference, code).is_none(),
            "ref {reference} answered twice"
        );
        match code {
            None => ok += 1,
            Some(ErrorCode::Overloaded) => overloaded += 1,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(overloaded > 0, "capacity 1 never overflowed ({ok} ok)");
    assert!(ok > 0, "nothing got through");
    // The session is still usable once the burst is over.
    client.emit("r", "after", Value::Nil, false).await.unwrap();
}
