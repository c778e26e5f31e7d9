//! Rooms with rules, the lobby and matchmaking, end to end: seats and locks, privacy and
//! passwords, owner transfer, kicks and metadata as lobby subscribers see them, racing
//! join-or-create, and `GET /rooms`.

use std::collections::HashMap;
use std::time::Instant;

use parlor_client::protocol::{
    ErrorCode, LeaveReason, LobbyFrame, Metadata, RoomFilter, RoomInfo, RoomOptions, ServerFrame,
    SessionId, Value,
};
use parlor_client::Client;

use crate::common::*;

fn seats(n: u32) -> RoomOptions {
    RoomOptions {
        max_members: Some(n),
        ..RoomOptions::default()
    }
}

fn metadata(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect()
}

fn mode(name: &str) -> RoomFilter {
    RoomFilter {
        mode: Some(name.into()),
        ..RoomFilter::default()
    }
}

/// A lobby subscriber's view: the rooms it knows, kept up to date from `lobby` frames.
struct LobbyView {
    client: Client,
    rooms: HashMap<String, RoomInfo>,
}

impl LobbyView {
    async fn subscribe(node: &parlor::BackgroundNode, filter: RoomFilter) -> Self {
        let mut client = connect(node).await;
        let rooms = client.subscribe_lobby(filter).await.unwrap();
        Self {
            client,
            rooms: rooms.into_iter().map(|r| (r.room.clone(), r)).collect(),
        }
    }

    fn apply(&mut self, frame: LobbyFrame) {
        for info in frame.added.into_iter().chain(frame.changed) {
            self.rooms.insert(info.room.clone(), info);
        }
        for gone in frame.removed {
            self.rooms.remove(&gone);
        }
    }

    /// Applies lobby frames until `room` satisfies `want` (`None`: until it is gone).
    async fn wait_for(&mut self, room: &str, what: &str, want: impl Fn(Option<&RoomInfo>) -> bool) {
        within(5, what, async {
            while !want(self.rooms.get(room)) {
                match self.client.next_frame().await.expect("frame") {
                    ServerFrame::Lobby(frame) => self.apply(frame),
                    other => panic!("a lobby subscriber got {other:?}"),
                }
            }
        })
        .await
    }
}

#[tokio::test]
async fn seats_locks_privacy_and_passwords() {
    let node = start(test_config());
    let mut owner = connect(&node).await;
    let mut b = connect(&node).await;
    let mut c = connect(&node).await;
    owner.create(Some("table"), seats(2)).await.unwrap();
    b.join("table").await.unwrap();
    // Full: refused, and shown as locked.
    assert_eq!(
        refused_code(c.join("table").await.map(|_| ())),
        ErrorCode::RoomFull
    );
    let listed = c.list_rooms(RoomFilter::default(), None).await.unwrap();
    assert!(listed[0].locked);
    let free = RoomFilter {
        free_seats: true,
        ..RoomFilter::default()
    };
    assert!(c.list_rooms(free.clone(), None).await.unwrap().is_empty());
    // A freed seat opens it again.
    b.leave("table").await.unwrap();
    assert_eq!(c.list_rooms(free, None).await.unwrap().len(), 1);
    c.join("table").await.unwrap();
    c.leave("table").await.unwrap();
    // Locked by hand, it stays locked when seats free, until the owner unlocks it.
    assert_eq!(
        refused_code(b.set_locked("table", true).await),
        ErrorCode::NotInRoom
    );
    owner.set_locked("table", true).await.unwrap();
    assert_eq!(
        refused_code(b.join("table").await.map(|_| ())),
        ErrorCode::RoomLocked
    );
    owner.set_locked("table", false).await.unwrap();
    b.join("table").await.unwrap();
    assert_eq!(
        refused_code(b.set_locked("table", true).await),
        ErrorCode::NotOwner
    );

    // Private rooms are never listed, but their id lets anyone in.
    let hidden = owner
        .create(
            None,
            RoomOptions {
                private: true,
                ..RoomOptions::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<String> = c
        .list_rooms(RoomFilter::default(), None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.room)
        .collect();
    assert_eq!(names, ["table"]);
    assert!(c.join_room(&hidden.room, None).await.unwrap().private);

    // Passwords: missing and wrong are refused alike, the right one admits.
    owner
        .create(
            Some("vault"),
            RoomOptions {
                password: Some("open sesame".into()),
                ..RoomOptions::default()
            },
        )
        .await
        .unwrap();
    for wrong in [None, Some("open sesamE"), Some("")] {
        let result = c.join_room("vault", wrong).await.map(|_| ());
        assert_eq!(refused_code(result), ErrorCode::WrongPassword);
    }
    c.join_room("vault", Some("open sesame")).await.unwrap();
    assert_eq!(
        refused_code(
            owner
                .create(Some("vault"), RoomOptions::default())
                .await
                .map(|_| ())
        ),
        ErrorCode::RoomExists
    );
}

#[tokio::test]
async fn a_hundred_racing_join_or_creates_fill_exactly_25_rooms_of_4() {
    let node = start(test_config());
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(connect(&node).await);
    }
    let start_line = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let start_line = start_line.clone();
            tokio::spawn(async move {
                start_line.wait().await;
                let joined = client
                    .join_or_create(mode("squad"), seats(4))
                    .await
                    .expect("join_or_create");
                (client, joined.room)
            })
        })
        .collect();
    let mut per_room: HashMap<String, usize> = HashMap::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, room) = within(20, "join_or_create", task).await.unwrap();
        *per_room.entry(room).or_default() += 1;
        clients.push(client);
    }
    assert_eq!(per_room.len(), 25, "{per_room:?}");
    assert!(per_room.values().all(|&n| n == 4), "{per_room:?}");
    // The server agrees: 25 rooms of this mode, each full and locked.
    let (status, body) = get_json(&node, "/rooms?mode=squad&limit=500").await;
    assert_eq!(status, 200);
    let rooms = body["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 25);
    for room in rooms {
        assert_eq!(
            (room["members"].as_u64(), room["max_members"].as_u64()),
            (Some(4), Some(4))
        );
        assert_eq!(room["locked"], true);
        assert_eq!(room["metadata"]["mode"], "squad");
    }
    drop(clients);
}

#[tokio::test]
async fn lobby_subscribers_see_creation_owner_transfer_kicks_metadata_and_removal() {
    let node = start(test_config());
    let mut lobby = LobbyView::subscribe(&node, RoomFilter::default()).await;
    let mut duel_lobby = LobbyView::subscribe(&node, mode("duel")).await;
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    let mut c = connect(&node).await;
    let (a_id, b_id, c_id) = (a.session_id(), b.session_id(), c.session_id());

    a.create(
        Some("arena"),
        RoomOptions {
            metadata: metadata(&[("mode", "duel"), ("map", "dust")]),
            ..seats(4)
        },
    )
    .await
    .unwrap();
    b.join("arena").await.unwrap();
    c.join("arena").await.unwrap();
    lobby
        .wait_for("arena", "arena with 3 members", |r| {
            r.is_some_and(|r| r.members == 3 && r.owner == Some(a_id))
        })
        .await;
    duel_lobby
        .wait_for("arena", "arena in the duel lobby", |r| r.is_some())
        .await;

    // The owner leaves: the oldest member owns the room, and the lobby shows it.
    a.leave("arena").await.unwrap();
    lobby
        .wait_for("arena", "owner transfer", |r| {
            r.is_some_and(|r| r.owner == Some(b_id) && r.members == 2)
        })
        .await;
    // The members were told too.
    let update = next_matching(
        &mut c,
        "room_update",
        |f| matches!(f, ServerFrame::RoomUpdate(u) if u.owner == Some(b_id)),
    )
    .await;
    assert!(matches!(update, ServerFrame::RoomUpdate(_)));

    // A kick.
    b.kick("arena", c_id).await.unwrap();
    let left = next_matching(&mut c, "left", |f| matches!(f, ServerFrame::Left { .. })).await;
    assert_eq!(
        left,
        ServerFrame::Left {
            room: "arena".into(),
            reason: LeaveReason::Kicked
        }
    );
    lobby
        .wait_for("arena", "kick", |r| r.is_some_and(|r| r.members == 1))
        .await;

    // Metadata: the duel lobby drops the room when it stops being a duel.
    b.set_metadata("arena", metadata(&[("mode", "ffa"), ("map", "nuke")]))
        .await
        .unwrap();
    lobby
        .wait_for("arena", "metadata change", |r| {
            r.is_some_and(|r| r.metadata.get("map") == Some(&Value::from("nuke")))
        })
        .await;
    duel_lobby
        .wait_for("arena", "arena gone from the duel lobby", |r| r.is_none())
        .await;

    // The last member leaves: the room is gone.
    b.leave("arena").await.unwrap();
    lobby
        .wait_for("arena", "arena removed", |r| r.is_none())
        .await;
    let _: SessionId = c_id;
}

#[tokio::test]
async fn a_busy_lobby_is_coalesced_to_its_interval() {
    let mut config = test_config();
    config.rooms.lobby_interval_ms = 100;
    // The watcher reads nothing (so answers no ping) while the churn runs, which takes
    // seconds on a loaded machine: only a generous timeout keeps it connected.
    config.session.heartbeat_interval_ms = 1_000;
    config.session.client_timeout_ms = 60_000;
    let node = start(config);
    let mut watcher = LobbyView::subscribe(&node, RoomFilter::default()).await;
    let mut churner = connect(&node).await;
    // About a thousand room changes as fast as one client can make them.
    let began = Instant::now();
    for i in 0..250 {
        let room = format!("churn-{}", i % 10);
        churner.join(&room).await.unwrap();
        churner.emit(&room, "e", Value::Nil, false).await.unwrap();
        churner.leave(&room).await.unwrap();
        churner
            .create(Some(&format!("kept-{i}")), seats(2))
            .await
            .unwrap();
        churner.leave(&format!("kept-{i}")).await.unwrap();
    }
    let busy = began.elapsed();
    // A room made after all the churn, and kept: once the watcher knows it, it has every
    // earlier change too, however long a loaded machine took to deliver them.
    churner.join("marker").await.unwrap();
    let mut frames = 0;
    within(10, "the lobby view to settle", async {
        while watcher.rooms.len() != 1 || !watcher.rooms.contains_key("marker") {
            if let ServerFrame::Lobby(frame) = watcher.client.next_frame().await.expect("frame") {
                frames += 1;
                watcher.apply(frame);
            }
        }
    })
    .await;
    let elapsed = began.elapsed();
    // The bound is the server's timer, not this machine's speed: at most one frame per
    // interval of the whole observation, plus one for a partial interval at each end.
    let bound = (elapsed.as_millis() / 100) as usize + 2;
    assert!(
        frames <= bound,
        "{frames} lobby frames in {elapsed:?} (busy for {busy:?}); at most {bound} allowed"
    );
}

#[tokio::test]
async fn get_rooms_filters_like_list_rooms_and_rejects_bad_queries() {
    let node = start(test_config());
    let mut a = connect(&node).await;
    a.create(
        Some("one"),
        RoomOptions {
            metadata: metadata(&[("mode", "ctf"), ("level", "3")]),
            ..seats(2)
        },
    )
    .await
    .unwrap();
    let mut extra = Metadata::new();
    extra.insert("mode".into(), Value::from("ctf"));
    extra.insert("level".into(), Value::from(3));
    a.create(
        Some("two"),
        RoomOptions {
            metadata: extra,
            ..seats(1)
        },
    )
    .await
    .unwrap();
    a.create(Some("three"), RoomOptions::default())
        .await
        .unwrap();
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["room"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases = [
        ("/rooms", vec!["one", "two", "three"]),
        ("/rooms?mode=ctf", vec!["one", "two"]),
        ("/rooms?mode=ctf&free_seats=true", vec!["one"]),
        // JSON-looking values are JSON: 3 is a number, "3" a string.
        ("/rooms?meta.level=3", vec!["two"]),
        ("/rooms?meta.level=%223%22", vec!["one"]),
        ("/rooms?limit=1", vec!["one"]),
    ];
    for (path, want) in cases {
        let (status, body) = get_json(&node, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(names(&body), want, "{path}");
    }
    let one = &get_json(&node, "/rooms?limit=1").await.1["rooms"][0];
    assert_eq!(one["owner"], a.session_id().to_string());
    assert_eq!(one["password"], false);
    for bad in [
        "/rooms?limit=0",
        "/rooms?free_seats=maybe",
        "/rooms?colour=red",
    ] {
        let (status, body) = get_json(&node, bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_query")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_limit_over_max_listed_rooms_is_cut_to_it_over_http_too() {
    const KEY: &str = "backend-key-0123456789";
    let mut config = test_config();
    config.limits.max_listed_rooms = 2;
    config.api.key = KEY.into();
    let node = start(config);
    let mut a = connect(&node).await;
    for room in ["one", "two", "three"] {
        a.create(Some(room), RoomOptions::default()).await.unwrap();
    }
    let auth = format!("Bearer {KEY}");
    let rooms = |body: &serde_json::Value| body["rooms"].as_array().map(Vec::len);
    for limit in ["2", "100", "99999999999999999999999"] {
        let (status, body) = get_json(&node, &format!("/rooms?limit={limit}")).await;
        assert_eq!((status, rooms(&body)), (200, Some(2)), "/rooms {limit}");
        let path = format!("/api/rooms?limit={limit}");
        let (status, _, body) =
            http(&node, "GET", &path, &[("authorization", &auth)], vec![]).await;
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!((status, rooms(&body)), (200, Some(2)), "{path}");
    }
    for limit in ["0", "-1", "ten", ""] {
        let (status, body) = get_json(&node, &format!("/rooms?limit={limit}")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_query")),
            "{limit}"
        );
        let path = format!("/api/rooms?limit={limit}");
        let (status, _, body) =
            http(&node, "GET", &path, &[("authorization", &auth)], vec![]).await;
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn metadata_holding_a_map_key_json_cannot_carry_is_refused_and_get_rooms_stays_up() {
    // A map keyed by nil inside metadata: MessagePack can say it, JSON cannot, and
    // `GET /rooms` lists metadata as JSON. One such room used to make `/rooms` panic for
    // everyone for as long as it lived.
    let node = start(test_config());
    let mut a = connect(&node).await;
    let nil_keyed = Metadata::from([(
        "m".to_owned(),
        Value::Map(vec![(Value::Nil, Value::from(1))]),
    )]);
    let refused = a
        .create(
            Some("odd"),
            RoomOptions {
                metadata: nil_keyed.clone(),
                ..RoomOptions::default()
            },
        )
        .await
        .map(drop);
    assert_eq!(refused_code(refused), ErrorCode::InvalidOptions);
    let refused = a
        .join_or_create(
            RoomFilter {
                metadata: nil_keyed.clone(),
                ..RoomFilter::default()
            },
            RoomOptions::default(),
        )
        .await
        .map(drop);
    assert_eq!(refused_code(refused), ErrorCode::InvalidOptions);
    a.create(Some("plain"), RoomOptions::default())
        .await
        .expect("create");
    let refused = a.set_metadata("plain", nil_keyed).await;
    assert_eq!(refused_code(refused), ErrorCode::InvalidOptions);
    let (status, body) = get_json(&node, "/rooms").await;
    assert_eq!(status, 200, "{body}");
    let rooms: Vec<&str> = body["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["room"].as_str())
        .collect();
    assert_eq!(rooms, ["plain"]);
    assert_usable(&mut a, "after").await;
}
