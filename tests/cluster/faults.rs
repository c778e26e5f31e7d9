//! Faults: a node killed outright (the others remove its members, reason `node_lost`), Redis
//! stopped and started again (local members stay connected, the node reports `degraded`, and
//! cross-node delivery comes back), and a session dropped from one node resumed on another
//! with the events it missed.

use std::time::{Duration, Instant};

use parlor_client::protocol::{
    ErrorCode, LeaveReason, PresenceStatus, RoomPosition, ServerFrame, Value,
};
use parlor_client::{Client, ClientError};

use crate::harness::{cluster, next_matching, within};

const NODE_TTL: Duration = Duration::from_millis(3000);

/// Emits the numbers in `range` into room "feed", one request each.
async fn emit_numbers(writer: &mut Client, range: std::ops::Range<u64>) {
    for n in range {
        writer
            .emit("feed", "n", Value::from(n), false)
            .await
            .expect("emit");
    }
}

/// Reads "feed" until `seen` holds `until` numbers, each frame checked by `position` (once
/// each, in offset order).
async fn read_numbers(
    reader: &mut Client,
    position: &mut RoomPosition,
    seen: &mut Vec<u64>,
    until: usize,
) {
    within(5, "the events", async {
        while seen.len() < until {
            let frame = reader.next_frame().await.expect("frame");
            position.advance(&frame).expect("once each, in order");
            if let ServerFrame::Event(e) = frame {
                seen.push(e.data.as_u64().expect("number"));
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_members_are_purged_by_the_survivors() {
    let (redis, mut nodes) = cluster(3, &[]).await;
    let mut doomed = Vec::new();
    let mut doomed_clients = Vec::new();
    for _ in 0..3 {
        let mut client = nodes[2].client().await;
        client.join("arena").await.expect("join");
        doomed.push(client.session_id());
        doomed_clients.push(client);
    }
    let mut watchers = Vec::new();
    for node in &nodes[..2] {
        let mut client = node.client().await;
        let members = client.join("arena").await.expect("join");
        assert!(
            doomed.iter().all(|id| members.contains(id)),
            "{doomed:?} in {members:?}"
        );
        watchers.push(client);
    }
    let killed_at = Instant::now();
    nodes[2].kill();
    for watcher in &mut watchers {
        let mut gone = Vec::new();
        let budget = NODE_TTL + Duration::from_secs(2);
        while gone.len() < doomed.len() {
            let left = budget.saturating_sub(killed_at.elapsed()).as_secs().max(1);
            let frame = next_matching(
                watcher,
                left,
                "left (node_lost)",
                |f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Left),
            )
            .await;
            let ServerFrame::Presence(p) = frame else {
                unreachable!()
            };
            assert_eq!(p.reason, Some(LeaveReason::NodeLost));
            gone.push(p.session);
        }
        assert!(
            killed_at.elapsed() <= budget,
            "purged after {:?}",
            killed_at.elapsed()
        );
        gone.sort();
        let mut want = doomed.clone();
        want.sort();
        assert_eq!(gone, want);
    }
    // The room now holds the two survivors only.
    let joined = nodes[0]
        .client()
        .await
        .join_room("arena", None)
        .await
        .expect("join");
    assert_eq!(joined.members.len(), 3);
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_and_coming_back() {
    let key = "backend-key-0123456789";
    let (mut redis, nodes) = cluster(2, &[("PARLOR_API_KEY", key)]).await;
    let mut a = nodes[0].client().await;
    let mut neighbour = nodes[0].client().await;
    let mut b = nodes[1].client().await;
    a.join("lounge").await.expect("join");
    neighbour.join("lounge").await.expect("join");
    b.join("lounge").await.expect("join");

    redis.stop();
    let stopped = Instant::now();
    within(10, "node a degraded", nodes[0].wait_for_redis(false)).await;
    assert_eq!(nodes[0].health().await["status"], "degraded");
    let (status, body) = nodes[0].api("GET", "/ready", key, None).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("degraded")));
    let metrics = within(5, "metrics", async {
        let url = nodes[0].http_url("/metrics");
        tokio::task::spawn_blocking(move || ureq::get(&url).call().ok()?.into_string().ok())
            .await
            .ok()
            .flatten()
    })
    .await
    .expect("metrics");
    assert!(metrics.contains("parlor_cluster_up 0"), "{metrics}");
    for family in [
        "parlor_cluster_frames_lost_total",
        "parlor_cluster_messages_dropped_total",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }

    // The node keeps its sessions; what needs Redis is refused, clearly, and counted. (An
    // emit written to the command connection before the node saw it close has an unknown
    // outcome: it may have been the one that did.)
    within(10, "an emit refused as unavailable", async {
        loop {
            match a.emit("lounge", "during", Value::Nil, false).await {
                Err(ClientError::Refused(frame)) if frame.code == ErrorCode::OutcomeUnknown => {}
                Err(ClientError::Refused(frame)) => {
                    assert_eq!(frame.code, ErrorCode::Unavailable);
                    break;
                }
                other => panic!("expected unavailable, got {other:?}"),
            }
        }
    })
    .await;
    let url = nodes[0].http_url("/metrics");
    let counted =
        tokio::task::spawn_blocking(move || ureq::get(&url).call().ok()?.into_string().ok())
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
    assert!(
        counted.contains("parlor_errors_total{code=\"unavailable\"} 1"),
        "the refusal is counted: {counted}"
    );
    assert!(a.list_rooms(Default::default(), None).await.is_err());
    // The HTTP side says it does not know, rather than "no such room" or "no rooms".
    let body = serde_json::json!({"event": "x", "data": 1});
    let (status, _) = nodes[0]
        .api("POST", "/api/rooms/lounge/events", key, Some(body))
        .await;
    assert_eq!(status, 503);
    assert_eq!(
        nodes[0].api("GET", "/api/rooms/lounge", key, None).await.0,
        503
    );
    let (status, body) = nodes[0].api("GET", "/rooms", key, None).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")));
    // Two members on the same node still reach each other directly.
    a.send_direct(neighbour.session_id(), "psst", Value::from(1))
        .await
        .expect("a direct send on one node");
    next_matching(
        &mut neighbour,
        5,
        "the direct send during the outage",
        |f| matches!(f, ServerFrame::Direct(d) if d.event == "psst"),
    )
    .await;

    // Longer than node_ttl: every heartbeat has expired when Redis is back, and no node may
    // take the others for dead.
    let outage_left = (NODE_TTL + Duration::from_secs(1)).saturating_sub(stopped.elapsed());
    tokio::time::sleep(outage_left).await;
    redis.restart();
    let back = Instant::now();
    within(10, "node a back", nodes[0].wait_for_redis(true)).await;
    within(10, "node b back", nodes[1].wait_for_redis(true)).await;
    assert_eq!(nodes[0].api("GET", "/ready", key, None).await.0, 200);
    // Cross-node delivery is back within 5 s of Redis.
    within(5, "an emit to get through", async {
        loop {
            if a.emit("lounge", "after", Value::from(1), false)
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    next_matching(
        &mut b,
        5,
        "the event from node a",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "after"),
    )
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "took {:?}",
        back.elapsed()
    );
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_dropped_on_one_node_resumes_on_another() {
    let (redis, nodes) = cluster(2, &[("PARLOR_SESSION_RECONNECT_GRACE_MS", "20000")]).await;
    let mut writer = nodes[0].client().await;
    writer.join("feed").await.expect("join");
    let mut reader = nodes[0].client().await;
    let joined = reader.join_room("feed", None).await.expect("join");
    let (session, token) = (reader.session_id(), reader.welcome().resume_token.clone());
    let mut position = RoomPosition::from_joined(&joined);
    emit_numbers(&mut writer, 0..20).await;
    let mut seen = Vec::new();
    read_numbers(&mut reader, &mut position, &mut seen, 20).await;
    // The reader's connection drops (no close frame); 30 events go by.
    reader.abort();
    next_matching(
        &mut writer,
        5,
        "reader away",
        |f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Away),
    )
    .await;
    emit_numbers(&mut writer, 20..50).await;
    // It comes back on node b.
    let mut again = nodes[1].client().await;
    let resumed = again
        .resume(session, &token, vec![position.clone()])
        .await
        .expect("resume");
    assert_eq!(resumed.session, session);
    assert!(resumed.rooms.iter().all(|r| r.recovered));
    emit_numbers(&mut writer, 50..51).await;
    read_numbers(&mut again, &mut position, &mut seen, 51).await;
    assert_eq!(seen, (0..51).collect::<Vec<u64>>());
    next_matching(&mut writer, 5, "reader back", |f| {
        matches!(f, ServerFrame::Presence(p) if p.session == session && p.status == PresenceStatus::Back)
    })
    .await;
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_a_killed_node_resumes_elsewhere_before_the_purge() {
    let (redis, mut nodes) = cluster(2, &[]).await;
    let mut writer = nodes[0].client().await;
    writer.join("feed").await.expect("join");
    let mut reader = nodes[1].client().await;
    let joined = reader.join_room("feed", None).await.expect("join");
    let (session, token) = (reader.session_id(), reader.welcome().resume_token.clone());
    let mut position = RoomPosition::from_joined(&joined);
    emit_numbers(&mut writer, 0..5).await;
    let mut seen = Vec::new();
    read_numbers(&mut reader, &mut position, &mut seen, 5).await;
    // The reader's node dies; before the survivors notice, the reader is back on node a.
    nodes[1].kill();
    emit_numbers(&mut writer, 5..10).await;
    let mut again = nodes[0].client().await;
    let resumed = again
        .resume(session, &token, vec![position.clone()])
        .await
        .expect("resume before the purge");
    assert!(resumed.rooms.iter().all(|r| r.recovered));
    read_numbers(&mut again, &mut position, &mut seen, 10).await;
    assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    // The purge of the dead node, once it comes, does not take the resumed session: the
    // writer hears the reader's next event, and no `left` for it before.
    tokio::time::sleep(NODE_TTL + Duration::from_secs(2)).await;
    again
        .emit("feed", "still-here", Value::Nil, false)
        .await
        .expect("emit");
    let frame = next_matching(&mut writer, 5, "the reader's event, or its purge", |f| {
        matches!(f, ServerFrame::Event(e) if e.from == session)
            || matches!(f, ServerFrame::Presence(p) if p.session == session && p.status == PresenceStatus::Left)
    })
    .await;
    assert!(matches!(frame, ServerFrame::Event(_)), "{frame:?}");
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_redis_took_but_never_answered_is_outcome_unknown() {
    // Issue 12: with Redis frozen, an emit answered `unavailable` ("not carried out") was
    // delivered everywhere once Redis ran again.
    let (redis, nodes) = cluster(2, &[]).await;
    let mut a = nodes[0].client().await;
    let mut b = nodes[1].client().await;
    a.join("frozen").await.expect("join");
    b.join("frozen").await.expect("join");

    redis.freeze();
    let answer = within(15, "an answer while Redis is frozen", async {
        a.emit("frozen", "sent", Value::from(1), false).await
    })
    .await;
    match answer {
        Err(ClientError::Refused(frame)) => assert_eq!(frame.code, ErrorCode::OutcomeUnknown),
        other => panic!("expected outcome_unknown, got {other:?}"),
    }
    // Now the node knows Redis is gone: what it does not send is plainly `unavailable`.
    within(10, "node a degraded", nodes[0].wait_for_redis(false)).await;
    match a.emit("frozen", "unsent", Value::from(2), false).await {
        Err(ClientError::Refused(frame)) => assert_eq!(frame.code, ErrorCode::Unavailable),
        other => panic!("expected unavailable, got {other:?}"),
    }
    redis.thaw();
    // The first emit was carried out after all, which is why its answer could not say no.
    next_matching(
        &mut b,
        15,
        "the emit Redis ran after it thawed",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "sent"),
    )
    .await;
    within(15, "node a back", nodes[0].wait_for_redis(true)).await;
    redis.assert_consistent();
}
