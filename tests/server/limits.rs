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
        Err(parlor_client::ClientError::Rejected { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (503, "too_many_connections"))
        }
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
async fn a_full_request_queue_slows_senders_down_and_refuses_nothing() {
    let mut config = test_config();
    // Room for sixteen requests at most: the senders below outrun the registry many times over.
    config.limits.max_frame_bytes = 4096;
    config.registry.queue_bytes = 4096;
    let node = start(config);
    let mut listener = connect(&node).await;
    listener.join("r").await.unwrap();
    const SENDERS: usize = 4;
    const REQUESTS: u64 = 500;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let mut client = connect(&node).await;
        client.join("r").await.unwrap();
        senders.push(client);
    }
    // Every sender pipelines its requests without waiting for any answer.
    for client in &mut senders {
        for reference in 1..=REQUESTS {
            let frame = ClientFrame::Emit {
                reference: Some(reference),
                room: "r".into(),
                event: "e".into(),
                data: Value::from(reference),
                echo: false,
            };
            client.send(&frame).await.unwrap();
        }
    }
    for client in &mut senders {
        let mut answered = 0;
        while answered < REQUESTS {
            match next(client).await {
                ServerFrame::Ok { reference, .. } => {
                    answered += 1;
                    assert_eq!(reference, answered, "answers come in order");
                }
                ServerFrame::Error(e) => panic!("refused: {e:?}"),
                _ => {}
            }
        }
    }
    // The listener hears every event of every sender, each sender's in order.
    let mut last: std::collections::HashMap<_, u64> = std::collections::HashMap::new();
    for _ in 0..SENDERS as u64 * REQUESTS {
        let ServerFrame::Event(e) = next_matching(&mut listener, "an event", |f| {
            matches!(f, ServerFrame::Event(_))
        })
        .await
        else {
            unreachable!()
        };
        let n = e.data.as_u64().unwrap();
        let before = last.insert(e.from, n).unwrap_or(0);
        assert_eq!(n, before + 1, "events of {} out of order", e.from);
    }
}
