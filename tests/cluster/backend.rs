//! What reaches across nodes besides a room's frames: the lobby, an owner's kick and lock, the
//! backend API on any node, and a node shutting down (its sessions resume on another).

use parlor_client::protocol::{
    close, LeaveReason, Metadata, PresenceStatus, RoomFilter, RoomOptions, RoomPosition,
    ServerFrame, SessionId, Value,
};
use parlor_client::ClientError;

use crate::harness::{cluster, next_matching, within};

const KEY: &str = "backend-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_kick_and_lock_span_nodes() {
    let (redis, nodes) = cluster(3, &[]).await;
    let mut owner = nodes[0].client().await;
    let mut guest = nodes[1].client().await;
    let mut watcher = nodes[2].client().await;
    let arena = RoomFilter {
        mode: Some("arena".into()),
        ..RoomFilter::default()
    };
    let listed = watcher
        .subscribe_lobby(arena.clone())
        .await
        .expect("subscribe");
    assert!(listed.is_empty());
    let metadata = Metadata::from([("mode".to_owned(), Value::from("arena"))]);
    owner
        .create(
            Some("pit"),
            RoomOptions {
                max_members: Some(3),
                metadata,
                ..RoomOptions::default()
            },
        )
        .await
        .expect("create");
    // The watcher on node c hears of the room made on node a.
    next_matching(
        &mut watcher,
        5,
        "the new room in the lobby",
        |f| matches!(f, ServerFrame::Lobby(l) if l.changed.iter().any(|r| r.room == "pit")),
    )
    .await;
    guest.join("pit").await.expect("join");
    next_matching(&mut watcher, 5, "two members in the lobby", |f| {
        matches!(f, ServerFrame::Lobby(l) if l.changed.iter().any(|r| r.room == "pit" && r.members == 2))
    })
    .await;

    // The owner on node a kicks the guest on node b.
    owner.kick("pit", guest.session_id()).await.expect("kick");
    let frame = next_matching(&mut guest, 5, "left (kicked)", |f| {
        matches!(f, ServerFrame::Left { .. })
    })
    .await;
    assert!(
        matches!(frame, ServerFrame::Left { ref room, reason: LeaveReason::Kicked } if room == "pit")
    );
    let refused = guest.emit("pit", "x", Value::Nil, false).await;
    assert!(matches!(refused, Err(ClientError::Refused(_))));

    // A lock made on node a closes the room to a join on node c, and leaves the lobby.
    owner.set_locked("pit", true).await.expect("lock");
    next_matching(&mut watcher, 5, "the locked room", |f| {
        matches!(f, ServerFrame::Lobby(l) if l.changed.iter().any(|r| r.room == "pit" && r.locked))
    })
    .await;
    let mut late = nodes[2].client().await;
    assert!(
        late.join("pit").await.is_err(),
        "a locked room takes nobody"
    );
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_api_on_any_node_sees_the_whole_cluster() {
    let (redis, nodes) = cluster(3, &[("PARLOR_API_KEY", KEY)]).await;
    let mut alice = nodes[0].client().await;
    let mut bob = nodes[1].client().await;
    alice.join("table").await.expect("join");
    bob.join("table").await.expect("join");

    // Publish through node c; both members get it.
    let body = serde_json::json!({"event": "deal", "data": 7});
    let (status, answer) = nodes[2]
        .api("POST", "/api/rooms/table/events", KEY, Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    for client in [&mut alice, &mut bob] {
        let frame = next_matching(client, 5, "the backend's event", |f| {
            matches!(f, ServerFrame::Event(_))
        })
        .await;
        let ServerFrame::Event(event) = frame else {
            unreachable!()
        };
        assert_eq!((event.from, event.data), (SessionId::NIL, Value::from(7)));
    }

    // Read it through node c: both members, wherever they are.
    let (status, room) = nodes[2].api("GET", "/api/rooms/table", KEY, None).await;
    assert_eq!(status, 200);
    // The shape of one node's answer: the count under its own key, `members` the list.
    assert_eq!(room["member_count"], 2);
    let members: Vec<&str> = room["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["session"].as_str())
        .collect();
    assert_eq!(
        members,
        [alice.session_id().to_string(), bob.session_id().to_string()]
    );

    // The listing, through node a, says which rooms are private (bob's, made on node b).
    bob.create(
        Some("hideout"),
        RoomOptions {
            private: true,
            ..RoomOptions::default()
        },
    )
    .await
    .expect("create");
    let (status, list) = nodes[0].api("GET", "/api/rooms", KEY, None).await;
    assert_eq!(status, 200, "{list}");
    let privacy: Vec<(&str, bool)> = list["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| Some((r["room"].as_str()?, r["private"].as_bool()?)))
        .collect();
    assert_eq!(privacy, [("table", false), ("hideout", true)]);

    // Disconnect alice (node a) through node c.
    let path = format!("/api/sessions/{}", alice.session_id());
    let (status, _) = nodes[2].api("DELETE", &path, KEY, None).await;
    assert_eq!(status, 204);
    let closed = within(5, "alice's close", alice.wait_closed()).await;
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(close::KICKED));
    next_matching(&mut bob, 5, "alice left (kicked)", |f| {
        matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Left && p.reason == Some(LeaveReason::Kicked))
    })
    .await;
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_hands_its_sessions_to_the_others() {
    let (redis, mut nodes) = cluster(2, &[("PARLOR_SESSION_RECONNECT_GRACE_MS", "20000")]).await;
    let mut player = nodes[0].client().await;
    let joined = player.join_room("match", None).await.expect("join");
    let (session, token) = (player.session_id(), player.welcome().resume_token.clone());
    let position = RoomPosition::from_joined(&joined);
    let mut peer = nodes[1].client().await;
    peer.join("match").await.expect("join");

    // A rolling restart: node a goes away gracefully.
    nodes[0].terminate();
    let closed = within(5, "going away", player.wait_closed()).await;
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(close::GOING_AWAY));
    let frame = next_matching(
        &mut peer,
        5,
        "the player away, not gone",
        |f| matches!(f, ServerFrame::Presence(p) if p.session == session),
    )
    .await;
    assert!(matches!(frame, ServerFrame::Presence(ref p) if p.status == PresenceStatus::Away));
    peer.emit("match", "while-away", Value::Nil, false)
        .await
        .expect("emit");

    // The player comes back through node b and misses nothing.
    let mut again = nodes[1].client().await;
    let resumed = again
        .resume(session, &token, vec![position])
        .await
        .expect("resume");
    assert!(resumed.rooms.iter().all(|r| r.recovered));
    next_matching(
        &mut again,
        5,
        "the event it missed",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "while-away"),
    )
    .await;
    next_matching(&mut peer, 5, "the player back", |f| {
        matches!(f, ServerFrame::Presence(p) if p.session == session && p.status == PresenceStatus::Back)
    })
    .await;
    redis.assert_consistent();
}
