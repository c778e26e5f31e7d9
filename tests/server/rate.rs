//! Rate limits: a flooding session gets `rate_limited` and its extra frames are dropped, an
//! honest member of the same room is not affected, sustained abuse is closed with 1008, and
//! new connections per address are limited with HTTP 429.

use parlor_client::protocol::{close, ErrorCode, ServerFrame, Value};
use parlor_client::ClientError;

use crate::common::*;

fn limited(frames_per_second: u32, burst: u32, violations: u32) -> parlor::Config {
    let mut config = test_config();
    config.rate_limits.frames_per_second = frames_per_second;
    config.rate_limits.frame_burst = burst;
    config.rate_limits.violations_before_close = violations;
    config
}

#[tokio::test]
async fn a_flood_is_refused_with_rate_limited_while_an_honest_member_is_unaffected() {
    // 5 frames a second, 20 at once; violations never close here.
    let node = start(limited(5, 20, 0));
    let mut flooder = connect(&node).await;
    let mut honest = connect(&node).await;
    let mut listener = connect(&node).await;
    for client in [&mut flooder, &mut honest, &mut listener] {
        client.join("arena").await.expect("join");
    }
    // 60 emits as fast as possible: the burst passes (less the token the join took), and
    // most of the rest are refused (all 60 could pass only if sending took 8 s).
    let (mut send, mut receive) = flooder.split();
    for n in 0..60 {
        send.send(parlor_client::emit_frame(
            "arena",
            "spam",
            Value::from(n),
            false,
        ))
        .await
        .expect("send");
    }
    let (mut ok, mut refused) = (0, 0);
    while ok + refused < 60 {
        match within(5, "answers", receive.next_frame())
            .await
            .expect("frame")
        {
            ServerFrame::Ok { .. } => ok += 1,
            ServerFrame::Error(e) if e.code == ErrorCode::RateLimited => {
                assert!(e.reference.is_some(), "the error names the request");
                refused += 1;
            }
            _ => {}
        }
    }
    assert!(ok >= 19 && refused >= 20, "{ok} passed, {refused} refused");
    // The honest member, at a game's pace, is never refused, and its events arrive.
    for n in 0..3 {
        honest
            .emit("arena", "move", Value::from(n), false)
            .await
            .expect("the honest member is not limited by the flooder");
    }
    let mut spam = 0;
    let mut moves = Vec::new();
    while moves.len() < 3 {
        match next(&mut listener).await {
            ServerFrame::Event(e) if e.event == "move" => moves.push(e.data),
            ServerFrame::Event(e) if e.event == "spam" => spam += 1,
            _ => {}
        }
    }
    assert_eq!(moves, vec![Value::from(0), Value::from(1), Value::from(2)]);
    assert_eq!(spam, ok, "only the frames that passed reached the room");
}

#[tokio::test]
async fn sustained_abuse_is_closed_with_policy_violation() {
    let node = start(limited(5, 5, 10));
    let mut abuser = connect(&node).await;
    abuser.join("arena").await.expect("join");
    let (mut send, mut receive) = abuser.split();
    for n in 0..100 {
        if send
            .send(parlor_client::emit_frame(
                "arena",
                "spam",
                Value::from(n),
                false,
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = within(10, "the close", async {
        loop {
            match receive.next_frame().await {
                Ok(_) => continue,
                Err(ClientError::Closed(frame)) => return frame,
                Err(other) => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    let code = closed.map(|c| u16::from(c.code));
    assert_eq!(code, Some(close::POLICY_VIOLATION));
}

#[tokio::test]
async fn new_connections_per_address_are_limited_with_429() {
    let mut config = test_config();
    config.rate_limits.connections_per_ip_per_second = 1;
    config.rate_limits.connection_burst = 3;
    let node = start(config);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&node).await);
    }
    match parlor_client::Client::connect(&node.ws_url()).await {
        Err(ClientError::Rejected { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (429, "rate_limited"))
        }
        Err(other) => panic!("expected HTTP 429, got {other:?}"),
        Ok(_) => panic!("a fourth connection within the burst's second was admitted"),
    }
}

#[tokio::test]
async fn malformed_and_text_floods_count_against_the_limits_too() {
    use tokio_tungstenite::tungstenite::Message;
    for garbage in [
        Message::Binary(vec![0xc1].into()),
        Message::Text("hi".into()),
    ] {
        let node = start(limited(5, 5, 10));
        let mut abuser = connect(&node).await;
        for _ in 0..100 {
            if abuser.send_message(garbage.clone()).await.is_err() {
                break;
            }
        }
        let closed = within(10, "the close", abuser.wait_closed()).await;
        assert_eq!(
            closed.map(|c| u16::from(c.code)),
            Some(close::POLICY_VIOLATION),
            "{garbage:?}"
        );
    }
}
