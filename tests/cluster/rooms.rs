//! One room across three nodes: `joined` lists every member wherever it is connected; emits,
//! direct sends and presence reach the other nodes; one sender's events arrive in order; and
//! matchmaking fills rooms exactly, however the racers are spread.

use std::collections::HashMap;

use parlor_client::protocol::{
    PresenceStatus, RoomFilter, RoomOptions, ServerFrame, SessionId, Value,
};

use crate::harness::{cluster, next_matching, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_nodes() {
    let (redis, nodes) = cluster(3, &[]).await;
    let mut alice = nodes[0].client().await;
    let mut bob = nodes[1].client().await;
    let mut carol = nodes[2].client().await;
    let ids = [alice.session_id(), bob.session_id(), carol.session_id()];

    alice.join("hall").await.expect("alice joins");
    let members = bob.join("hall").await.expect("bob joins");
    assert_eq!(members, ids[..2]);
    let joined = carol.join_room("hall", None).await.expect("carol joins");
    assert_eq!(
        joined.members, ids,
        "joined lists members on every node, in join order"
    );
    assert_eq!(joined.owner, Some(ids[0]));

    // Presence crosses nodes: alice (node a) hears bob and carol join.
    for id in &ids[1..] {
        next_matching(&mut alice, 5, "presence joined", |f| {
            matches!(f, ServerFrame::Presence(p) if p.session == *id && p.status == PresenceStatus::Joined)
        })
        .await;
    }

    // An emit from node b reaches nodes a and c, not its sender (no echo).
    bob.emit("hall", "move", Value::from(7), false)
        .await
        .expect("emit");
    for client in [&mut alice, &mut carol] {
        let frame = next_matching(client, 5, "bob's event", |f| {
            matches!(f, ServerFrame::Event(_))
        })
        .await;
        let ServerFrame::Event(event) = frame else {
            unreachable!()
        };
        assert_eq!((event.from, event.event.as_str()), (ids[1], "move"));
        assert_eq!(event.data, Value::from(7));
    }

    // A direct send from node c to node a.
    carol
        .send_direct(ids[0], "psst", Value::from("hi"))
        .await
        .expect("direct");
    let frame = next_matching(&mut alice, 5, "carol's direct", |f| {
        matches!(f, ServerFrame::Direct(_))
    })
    .await;
    let ServerFrame::Direct(direct) = frame else {
        unreachable!()
    };
    assert_eq!((direct.from, direct.event.as_str()), (ids[2], "psst"));

    // Leaving is heard on the other nodes, and ownership moves with it.
    alice.leave("hall").await.expect("leave");
    for client in [&mut bob, &mut carol] {
        next_matching(client, 5, "alice left", |f| {
            matches!(f, ServerFrame::Presence(p) if p.session == ids[0] && p.status == PresenceStatus::Left)
        })
        .await;
        let frame = next_matching(client, 5, "the new owner", |f| {
            matches!(f, ServerFrame::RoomUpdate(_))
        })
        .await;
        let ServerFrame::RoomUpdate(update) = frame else {
            unreachable!()
        };
        assert_eq!(update.owner, Some(ids[1]));
    }

    // The listing is the cluster's: node a lists the room with its two members.
    let rooms = alice
        .list_rooms(RoomFilter::default(), None)
        .await
        .expect("list");
    let hall = rooms
        .iter()
        .find(|r| r.room == "hall")
        .expect("hall listed");
    assert_eq!(hall.members, 2);
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_senders_events_arrive_in_order_on_every_node() {
    let (redis, nodes) = cluster(3, &[]).await;
    let mut sender = nodes[0].client().await;
    sender.join("race").await.expect("join");
    let mut readers = Vec::new();
    for node in &nodes[1..] {
        let mut reader = node.client().await;
        reader.join("race").await.expect("join");
        readers.push(reader);
    }
    // Fire-and-forget emits, no waiting between them.
    for n in 0..500 {
        let frame = parlor_client::emit_frame("race", "n", Value::from(n), false);
        sender.send(&frame).await.expect("send");
    }
    for reader in &mut readers {
        let mut seen = Vec::new();
        within(10, "500 events", async {
            while seen.len() < 500 {
                if let ServerFrame::Event(e) = reader.next_frame().await.expect("frame") {
                    seen.push(e.data.as_u64().expect("a number"));
                }
            }
        })
        .await;
        assert_eq!(seen, (0..500).collect::<Vec<u64>>());
    }
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchmaking_across_nodes_fills_rooms_exactly() {
    let (redis, nodes) = cluster(3, &[]).await;
    let mut tasks = Vec::new();
    for n in 0..100 {
        let url = nodes[n % 3].ws_url();
        tasks.push(tokio::spawn(async move {
            let mut client = parlor_client::Client::connect(&url).await.expect("connect");
            let joined = client
                .join_or_create(
                    RoomFilter {
                        mode: Some("duel4".into()),
                        ..RoomFilter::default()
                    },
                    RoomOptions {
                        max_members: Some(4),
                        ..RoomOptions::default()
                    },
                )
                .await
                .expect("join_or_create");
            (client, joined.room)
        }));
    }
    let mut clients = Vec::new();
    let mut seats: HashMap<String, Vec<SessionId>> = HashMap::new();
    for task in tasks {
        let (client, room) = within(30, "matchmaking", task).await.expect("task");
        seats.entry(room).or_default().push(client.session_id());
        clients.push(client);
    }
    assert_eq!(
        seats.len(),
        25,
        "rooms: {:?}",
        seats.values().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(seats.values().all(|members| members.len() == 4));
    // Redis agrees: every room full, none over.
    let rooms = clients[0]
        .list_rooms(
            RoomFilter {
                mode: Some("duel4".into()),
                ..RoomFilter::default()
            },
            Some(100),
        )
        .await
        .expect("list");
    assert_eq!(rooms.len(), 25);
    assert!(rooms.iter().all(|r| r.members == 4 && r.locked));
    redis.assert_consistent();
}

/// A token for `sub` whose rooms claim is `rooms`, signed with `secret`.
fn token_with_rooms(secret: &str, sub: &str, rooms: &[&str]) -> String {
    token(secret, serde_json::json!({"sub": sub, "rooms": rooms}))
}

/// A token with `claims` (and an `exp` ten minutes ahead), signed with `secret`.
fn token(secret: &str, mut claims: serde_json::Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + 600;
    claims["exp"] = exp.into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchmaking_keeps_to_the_rooms_claim_as_one_node_does() {
    // Issue 12: the cluster matched claims as Lua patterns: `[]` let a user in anywhere,
    // `r??` matched the two-character `ré` (three bytes), and a NUL cut a pattern short.
    const SECRET: &str = "a-cluster-test-secret-long-enough-for-hs256";
    let auth = [
        ("PARLOR_AUTH_ALGORITHM", "HS256"),
        ("PARLOR_AUTH_SECRET", SECRET),
    ];
    let (redis, nodes) = cluster(2, &auth).await;
    let connect = |rooms: &'static [&'static str]| {
        let url = format!(
            "{}?token={}",
            nodes[1].ws_url(),
            token_with_rooms(SECRET, "player", rooms)
        );
        async move { parlor_client::Client::connect(&url).await.expect("connect") }
    };
    let mut host = connect(&["*"]).await;
    for room in ["ré", "abcdef", "abc"] {
        host.join(room).await.expect("host joins");
    }
    let forbidden = |result: Result<_, parlor_client::ClientError>| match result {
        Err(parlor_client::ClientError::Refused(e)) => {
            assert_eq!(e.code, parlor_client::protocol::ErrorCode::Forbidden)
        }
        other => panic!("expected forbidden, got {other:?}"),
    };
    for claim in [&[][..], &["r??"][..], &["abc\u{0}"][..]] {
        let mut player = connect(claim).await;
        forbidden(
            player
                .join_or_create(RoomFilter::default(), RoomOptions::default())
                .await,
        );
    }
    // A claim that allows some of them: the player goes into one of those.
    let mut player = connect(&["abc*"]).await;
    let joined = player
        .join_or_create(RoomFilter::default(), RoomOptions::default())
        .await
        .expect("matched");
    assert!(
        ["abc", "abcdef"].contains(&joined.room.as_str()),
        "{}",
        joined.room
    );
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_by_id_and_the_owners_lock_read_the_same_on_every_node() {
    let (redis, nodes) = cluster(2, &[]).await;
    let mut owner = nodes[0].client().await;
    let mut guest = nodes[1].client().await;
    let join_existing = |room: &str| parlor_client::protocol::ClientFrame::Join {
        reference: None,
        room: room.into(),
        password: None,
        create: false,
    };
    // Join by id never makes a room.
    match guest.request(join_existing("vault")).await {
        Err(parlor_client::ClientError::Refused(e)) => {
            assert_eq!(e.code, parlor_client::protocol::ErrorCode::RoomNotFound)
        }
        other => panic!("expected room_not_found, got {other:?}"),
    }
    owner
        .create(
            Some("vault"),
            RoomOptions {
                max_members: Some(2),
                ..RoomOptions::default()
            },
        )
        .await
        .expect("create");
    guest
        .request(join_existing("vault"))
        .await
        .expect("join by id");
    // Full, not locked by its owner; then locked by its owner as well.
    next_matching(
        &mut owner,
        5,
        "the room full",
        |f| matches!(f, ServerFrame::RoomUpdate(u) if u.locked && !u.locked_by_owner),
    )
    .await;
    owner.set_locked("vault", true).await.expect("lock");
    next_matching(
        &mut guest,
        5,
        "the room locked by its owner",
        |f| matches!(f, ServerFrame::RoomUpdate(u) if u.locked && u.locked_by_owner),
    )
    .await;
    let listed = guest
        .list_rooms(RoomFilter::default(), None)
        .await
        .expect("list");
    assert!(listed
        .iter()
        .any(|r| r.room == "vault" && r.locked_by_owner));
    redis.assert_consistent();
}

/// The link joins a room's emits queued together into one `parlor_emit` call: each is
/// answered as if it were alone (a member's appended, a stranger's refused, in order), and the
/// frames appended go out in one publish, each with its offset, skip and length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_emits_are_each_answered_and_published_together() {
    let (redis, nodes) = cluster(1, &[]).await;
    let mut alice = nodes[0].client().await;
    alice.join("joined").await.expect("alice joins");
    let keys = parlor::cluster::Keys::new("parlor:").room("joined");
    let history: String = redis
        .query(redis::cmd("HGET").arg(&keys.room).arg("hist"))
        .expect("the room's history epoch");
    let next: u64 = redis
        .query(redis::cmd("HGET").arg(&keys.room).arg("next"))
        .expect("the room's next offset");
    // Channel messages reach every node of a Redis Cluster: listen at the first.
    let subscriber = redis::Client::open(redis.url()).expect("a client");
    let mut connection = subscriber.get_connection().expect("a connection");
    let mut pubsub = connection.as_pubsub();
    pubsub
        .subscribe(keys.channel(&history))
        .expect("subscribed");
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("a timeout");

    let mut common = Vec::new();
    let map = rmpv::Value::Map(vec![
        (rmpv::Value::from("keep"), rmpv::Value::from(100)),
        (
            rmpv::Value::from("head"),
            rmpv::Value::from(keys.channel("").as_str()),
        ),
    ]);
    rmpv::encode::write_value(&mut common, &map).expect("encoded");
    let arg = |member: Option<SessionId>, body: &str| {
        let mut map = vec![
            (rmpv::Value::from("skip"), rmpv::Value::from("")),
            (
                rmpv::Value::from("body"),
                rmpv::Value::from(format!("{body}\0")),
            ),
        ];
        if let Some(member) = member {
            map.push((
                rmpv::Value::from("member"),
                rmpv::Value::from(member.to_string()),
            ));
        }
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &rmpv::Value::Map(map)).expect("encoded");
        bytes
    };
    // One `parlor_emit` call of these emits, as the link joins them.
    let emit = |emits: &[Vec<u8>]| -> Vec<Vec<redis::Value>> {
        let mut args: Vec<&[u8]> = vec![&common];
        args.extend(emits.iter().map(Vec::as_slice));
        redis.room_fcall("parlor_emit", &keys, &args)
    };
    let stranger = SessionId::new_random();
    let answers = emit(&[
        arg(Some(alice.session_id()), "one"),
        arg(Some(stranger), "two"),
        arg(None, "three"),
    ]);
    let texts: Vec<Vec<String>> = answers
        .iter()
        .map(|answer| {
            answer
                .iter()
                .map(|v| redis::from_redis_value::<String>(v.clone()).expect("text"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts,
        [
            vec!["ok".to_owned(), next.to_string()],
            vec!["not_member".to_owned()],
            vec!["ok".to_owned(), (next + 1).to_string()],
        ],
        "each emit answered as if alone, in order"
    );
    let message = pubsub.get_message().expect("one publish");
    let payload: Vec<u8> = message.get_payload().expect("bytes");
    // Each frame gets its offset in place of its last byte (MessagePack's positive fixint).
    let record = |offset: u64, body: &str| {
        let mut frame = body.as_bytes().to_vec();
        frame.push(u8::try_from(offset).expect("a small offset"));
        let mut record = format!("{offset}\n\n{}\n", frame.len()).into_bytes();
        record.extend_from_slice(&frame);
        record
    };
    let mut expected = record(next, "one");
    expected.extend(record(next + 1, "three"));
    assert_eq!(payload, expected, "both frames in one message");

    // The log keeps that message as one entry; one more emit alone is an entry of its own.
    emit(&[arg(None, "four")]);
    // A read of the log gets the entries holding its range, and no entry past it, each as
    // XRANGE gives it: its id and its fields.
    let read_entries = |from: u64, to: i64| -> Vec<(String, Vec<Vec<u8>>)> {
        let mut args = Vec::new();
        let map = rmpv::Value::Map(vec![
            (rmpv::Value::from("from"), rmpv::Value::from(from)),
            (rmpv::Value::from("to"), rmpv::Value::from(to)),
        ]);
        rmpv::encode::write_value(&mut args, &map).expect("encoded");
        let reply: Vec<redis::Value> = redis.room_fcall("parlor_read_log", &keys, &[&args]);
        reply[3..]
            .iter()
            .map(|v| redis::from_redis_value(v.clone()).expect("an entry"))
            .collect()
    };
    // The channel messages those entries hold (field m).
    let read_log = |from: u64, to: i64| -> Vec<Vec<u8>> {
        read_entries(from, to)
            .into_iter()
            .map(|(_, fields)| {
                assert_eq!(fields[0], b"m", "{fields:?}");
                fields[1].clone()
            })
            .collect()
    };
    let to = |offset: u64| i64::try_from(offset).expect("small");
    let alone = record(next + 2, "four");
    assert_eq!(read_log(next + 1, to(next + 2)), [expected.clone()]);
    assert_eq!(
        read_log(next + 1, to(next + 3)),
        [expected.clone(), alone.clone()]
    );
    assert_eq!(read_log(next + 2, -1), [alone]);
    assert_eq!(read_log(next, to(next + 1)), [expected]);

    // The log stays bounded: it keeps the last `keep` (100) frames, dropping older entries
    // (a whole node of Redis's stream at a time, so somewhat more stay).
    for _ in 0..300 {
        emit(&[arg(None, "more")]);
    }
    let entries: u64 = redis
        .query(redis::cmd("XLEN").arg(&keys.log))
        .expect("XLEN");
    assert!((100..=220).contains(&entries), "{entries} entries");
    let end = next + 303;
    assert_eq!(
        read_log(end - 100, -1).len(),
        100,
        "the last 100 frames kept"
    );

    // An entry as a build before one entry per call wrote it (one frame, fields f and s) comes
    // back whole, for the node to read as that frame (`redis_store`'s
    // `an_entry_of_the_earlier_layout_reads_as_its_frame`): a log kept in Redis survives the
    // upgrade.
    let _: String = redis
        .query(
            redis::cmd("XADD")
                .arg(&keys.log)
                .arg(format!("0-{}", end + 1))
                .arg("f")
                .arg("old frame")
                .arg("s")
                .arg(""),
        )
        .expect("an old entry");
    let _: u64 = redis
        .query(redis::cmd("HINCRBY").arg(&keys.room).arg("next").arg(1))
        .expect("next");
    let old = read_entries(end, -1);
    assert_eq!(
        old,
        [(
            format!("0-{}", end + 1),
            vec![
                b"f".to_vec(),
                b"old frame".to_vec(),
                b"s".to_vec(),
                Vec::new()
            ]
        )]
    );
    drop(alice);
}

/// A reader (the read-only claim) on a node that is not the room's home: its emit cannot take
/// the fast path into the room's log; the home refuses it (`forbidden`, `read_only`) and the
/// writer hears nothing of it, while the reader hears the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_emit_on_another_node_is_refused_by_the_home() {
    const SECRET: &str = "a-cluster-test-secret-long-enough-for-hs256";
    let auth = [
        ("PARLOR_AUTH_ALGORITHM", "HS256"),
        ("PARLOR_AUTH_SECRET", SECRET),
    ];
    let (redis, nodes) = cluster(2, &auth).await;
    let connect = |node: usize, claims: serde_json::Value| {
        let url = format!("{}?token={}", nodes[node].ws_url(), token(SECRET, claims));
        async move { parlor_client::Client::connect(&url).await.expect("connect") }
    };
    let mut writer = connect(0, serde_json::json!({"sub": "w"})).await;
    let mut reader = connect(
        1,
        serde_json::json!({"sub": "r", "read_only_rooms": ["news"]}),
    )
    .await;
    writer
        .join("news")
        .await
        .expect("the writer makes the room");
    reader.join("news").await.expect("the reader enters");
    match reader.emit("news", "fake", Value::from(1), true).await {
        Err(parlor_client::ClientError::Refused(e)) => {
            assert_eq!(e.code, parlor_client::protocol::ErrorCode::Forbidden);
            assert_eq!(e.reason.as_deref(), Some("read_only"));
        }
        other => panic!("expected read_only, got {other:?}"),
    }
    writer
        .emit("news", "real", Value::from(2), false)
        .await
        .expect("the writer emits");
    let heard = next_matching(&mut reader, 5, "the writer's event", |f| {
        matches!(f, ServerFrame::Event(_))
    })
    .await;
    assert!(matches!(heard, ServerFrame::Event(e) if e.event == "real"));
    let seen = next_matching(&mut writer, 5, "any event", |f| {
        matches!(f, ServerFrame::Event(_))
    });
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), seen)
            .await
            .is_err(),
        "the writer heard the reader's refused emit"
    );
    redis.assert_consistent();
}
