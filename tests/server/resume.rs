//! Resume with replay: a client dropped mid-stream takes its session back and gets every event
//! it missed once, in order; after the grace it cannot; past the history it gets a snapshot.

use parlor_client::protocol::{
    ErrorCode, LeaveReason, PresenceStatus, RoomPosition, ServerFrame, StateOp, Value,
};
use parlor_client::{Client, ClientError};

use crate::common::*;

/// Moves `position` past `frame`, asserting that no frame of the room comes twice; the
/// event's value if it is an event of the room.
fn see(position: &mut RoomPosition, frame: &ServerFrame) -> Option<i64> {
    let moved = position.advance(frame)?;
    assert!(moved, "{frame:?} again after offset {}", position.offset);
    match frame {
        ServerFrame::Event(e) => e.data.as_i64(),
        _ => None,
    }
}

fn grace_config(grace_ms: u64) -> parlor::Config {
    let mut config = test_config();
    config.session.reconnect_grace_ms = grace_ms;
    config
}

async fn join_with_cursor(client: &mut Client, room: &str) -> RoomPosition {
    let joined = client.join_room(room, None).await.expect("join");
    let mut cursor = RoomPosition::from_joined(&joined);
    for frame in client.drain_buffered() {
        see(&mut cursor, &frame);
    }
    cursor
}

#[tokio::test]
async fn a_client_dropped_mid_stream_resumes_with_all_1000_events_in_order_once() {
    let node = start(grace_config(30_000));
    let mut reader = connect(&node).await;
    let mut writer = connect(&node).await;
    let session = reader.session_id();
    let token = reader.welcome().resume_token.clone();
    let mut cursor = join_with_cursor(&mut reader, "stream").await;
    writer.join("stream").await.expect("writer joins");

    let (mut sender, mut writer_rx) = writer.split();
    let produce = tokio::spawn(async move {
        for n in 0..1000i64 {
            sender
                .send(parlor_client::emit_frame(
                    "stream",
                    "n",
                    Value::from(n),
                    false,
                ))
                .await
                .expect("emit");
            if n % 100 == 99 {
                tokio::task::yield_now().await;
            }
        }
        sender
    });
    // The writer's acknowledgements are read so its outbound queue never fills.
    let acks = tokio::spawn(async move {
        let mut oks = 0;
        while oks < 1000 {
            if let Ok(ServerFrame::Ok { .. }) = writer_rx.next_frame().await {
                oks += 1;
            }
        }
        writer_rx
    });

    // Read part of the stream, then drop the connection without a close.
    let mut got = Vec::new();
    while got.len() < 250 {
        if let Some(n) = see(&mut cursor, &next(&mut reader).await) {
            got.push(n);
        }
    }
    reader.abort();

    let mut again = connect(&node).await;
    let resumed = within(
        10,
        "resumed",
        again.resume(session, &token, vec![cursor.clone()]),
    )
    .await
    .expect("resume accepted");
    assert_eq!(resumed.session, session);
    assert_eq!(again.session_id(), session);
    assert!(resumed.rooms.iter().all(|r| r.recovered), "{resumed:?}");
    for frame in again.drain_buffered() {
        if let Some(n) = see(&mut cursor, &frame) {
            got.push(n);
        }
    }
    while got.len() < 1000 {
        if let Some(n) = see(&mut cursor, &next(&mut again).await) {
            got.push(n);
        }
    }
    let _ = within(30, "the writer", produce).await;
    let _ = within(30, "the writer's acks", acks).await;
    assert_eq!(
        got,
        (0..1000).collect::<Vec<i64>>(),
        "every event once, in order"
    );
}

#[tokio::test]
async fn a_resume_after_the_grace_is_refused_cleanly_and_the_connection_carries_on() {
    let node = start(grace_config(300));
    let mut dropped = connect(&node).await;
    let mut other = connect(&node).await;
    let (session, token) = (dropped.session_id(), dropped.welcome().resume_token.clone());
    dropped.join("r").await.expect("join");
    other.join("r").await.expect("join");
    dropped.abort();
    let away = next_matching(
        &mut other,
        "away",
        |f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Away),
    )
    .await;
    assert!(matches!(away, ServerFrame::Presence(p) if p.session == session));
    let left = next_matching(
        &mut other,
        "left after the grace",
        |f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Left),
    )
    .await;
    assert!(
        matches!(&left, ServerFrame::Presence(p) if p.session == session && p.reason == Some(LeaveReason::Timeout)),
        "{left:?}"
    );
    let mut late = connect(&node).await;
    let fresh = late.session_id();
    match late.resume(session, &token, vec![]).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::ResumeFailed),
        other => panic!("expected resume_failed, got {other:?}"),
    }
    assert_eq!(late.session_id(), fresh);
    late.join("r")
        .await
        .expect("the refused connection is a working session");
}

#[tokio::test]
async fn a_resume_past_the_history_gets_a_snapshot_of_the_room() {
    let mut config = grace_config(30_000);
    config.rooms.history_frames = 16;
    let node = start(config);
    let mut dropped = connect(&node).await;
    let mut writer = connect(&node).await;
    let (session, token) = (dropped.session_id(), dropped.welcome().resume_token.clone());
    let cursor = join_with_cursor(&mut dropped, "doc").await;
    writer.join("doc").await.expect("join");
    dropped.abort();
    next_matching(
        &mut writer,
        "away",
        |f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Away),
    )
    .await;
    for n in 0..50 {
        writer
            .emit("doc", "n", Value::from(n), false)
            .await
            .expect("emit");
    }
    writer
        .update_state(
            "doc",
            vec![StateOp::Set {
                path: vec!["title".into()],
                value: Value::from("late"),
            }],
            None,
        )
        .await
        .expect("update");

    let mut again = connect(&node).await;
    let resumed = again
        .resume(session, &token, vec![cursor.clone()])
        .await
        .expect("resume accepted");
    assert_eq!(resumed.rooms.len(), 1);
    assert!(!resumed.rooms[0].recovered, "the gap is past the history");
    let snapshot = next_matching(&mut again, "snapshot", |f| {
        matches!(f, ServerFrame::Joined(_))
    })
    .await;
    let ServerFrame::Joined(joined) = snapshot else {
        unreachable!()
    };
    assert_eq!(joined.room, "doc");
    assert_eq!(joined.offset, resumed.rooms[0].offset);
    assert_eq!(joined.version, 1);
    assert!(joined.members.contains(&session) && joined.members.contains(&writer.session_id()));
    // And the session is live again: the writer's next event reaches it.
    writer
        .emit("doc", "n", Value::from(99), false)
        .await
        .expect("emit");
    let event = next_matching(&mut again, "a live event", |f| {
        matches!(f, ServerFrame::Event(_))
    })
    .await;
    assert!(matches!(event, ServerFrame::Event(e) if e.data == Value::from(99)));
}

#[tokio::test]
async fn only_a_connections_first_message_may_be_a_resume() {
    // Issue 12: a resume after other requests (a listing, a failed resume) was tried, letting
    // one connection guess token after token.
    let node = start(grace_config(30_000));
    let mut dropped = connect(&node).await;
    let (session, token) = (dropped.session_id(), dropped.welcome().resume_token.clone());
    dropped.join("kept").await.expect("join");
    dropped.abort();

    let refused = |result: Result<_, ClientError>| match result {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::ResumeFailed),
        other => panic!("expected resume_failed, got {other:?}"),
    };
    // After a listing, even the right token is refused.
    let mut late = connect(&node).await;
    late.list_rooms(Default::default(), None)
        .await
        .expect("list");
    refused(late.resume(session, &token, Vec::new()).await);
    // After a failed guess, the right token is refused on that connection too.
    let mut guesser = connect(&node).await;
    refused(
        guesser
            .resume(session, "0".repeat(64).as_str(), Vec::new())
            .await,
    );
    refused(guesser.resume(session, &token, Vec::new()).await);
    // A new connection whose first message is the resume takes the session back.
    let mut again = connect(&node).await;
    let resumed = again
        .resume(session, &token, Vec::new())
        .await
        .expect("resumed");
    assert_eq!(resumed.session, session);
}
