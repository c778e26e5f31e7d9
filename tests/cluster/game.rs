//! Rooms with logic on a cluster: the room runs on its home, players on any node; the home's
//! loss ends the room (`ended`), unless its logic gives snapshots: then it goes on, on its
//! new home, from the last one, as PROTOCOL.md says. The nodes here run in this process,
//! built with `NodeBuilder` and a room type (the `parlor` binary has none).

use std::time::Duration;

use parlor::game::{Ctx, Refusal, Reply, RoomLogic, SessionId, Value};
use parlor_client::protocol::{ClientFrame, ErrorCode, LeaveReason, RoomOptions, ServerFrame};
use parlor_client::Client;

use crate::editor::Editor;
use crate::harness::{within, Redis};

#[path = "../../examples/games/arena.rs"]
#[allow(dead_code)]
mod arena;

/// Two players; whoever's turn it is may `play`; each is told its own secret at joining.
struct Turns {
    players: Vec<SessionId>,
    turn: usize,
}

impl RoomLogic for Turns {
    fn joined(&mut self, ctx: &mut Ctx, player: &parlor::game::Player) {
        ctx.send(
            player.session,
            "secret",
            Value::from(self.players.len() as u64 + 100),
        );
        self.players.push(player.session);
    }

    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        event: &str,
        _data: Value,
    ) -> Result<Reply, Refusal> {
        match event {
            "play" if self.players.get(self.turn) == Some(&from) => {
                self.turn = (self.turn + 1) % self.players.len();
                ctx.broadcast("played", Value::from(self.turn as u64));
                Ok(Reply::Ok)
            }
            "play" => Err(Refusal::new("not_your_turn", "wait")),
            "players" => Ok(Reply::Data(Value::from(self.players.len() as u64))),
            _ => Err(Refusal::new("unknown_move", "play or players")),
        }
    }
}

fn node(redis: &Redis, name: &str) -> parlor::BackgroundNode {
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.rate_limits.frames_per_second = 0;
    config.rate_limits.bytes_per_second = 0;
    config.rate_limits.connections_per_ip_per_second = 0;
    config.session.reconnect_grace_ms = 0;
    config.cluster.redis_url = redis.url();
    config.cluster.redis_cluster = redis.is_cluster();
    config.cluster.node_id = name.to_owned();
    config.cluster.node_ttl_ms = 3000;
    parlor::NodeBuilder::new(config)
        .room_type("turns", |_: &mut Ctx, _: &Value| {
            Ok(Box::new(Turns {
                players: Vec::new(),
                turn: 0,
            }) as Box<dyn RoomLogic>)
        })
        .room_type("arena", arena::Arena::make)
        .room_type("ticker", |ctx: &mut Ctx, _: &Value| {
            ctx.set_tick_rate(20);
            Ok(Box::new(Ticker) as Box<dyn RoomLogic>)
        })
        .room_type("sleeper", |ctx: &mut Ctx, _: &Value| {
            ctx.set_tick_rate(20);
            Ok(Box::new(Sleeper) as Box<dyn RoomLogic>)
        })
        .room_type("kept-turns", |_: &mut Ctx, _: &Value| {
            Ok(Box::new(KeptTurns(Turns {
                players: Vec::new(),
                turn: 0,
            })) as Box<dyn RoomLogic>)
        })
        .spawn()
        .expect("node")
}

async fn client(node: &parlor::BackgroundNode) -> Client {
    let url = format!("ws://{}/ws", node.addr);
    // Until the node has reached Redis, what needs it is `unavailable`.
    for _ in 0..100 {
        if let Ok(mut client) = Client::connect(&url).await {
            let listed = client
                .list_rooms(parlor_client::protocol::RoomFilter::default(), None)
                .await;
            if listed.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no working connection to {url}");
}

/// The next frame that `pick` accepts, within 10 s.
async fn next<T>(client: &mut Client, what: &str, pick: impl Fn(ServerFrame) -> Option<T>) -> T {
    within(10, what, async {
        loop {
            if let Some(found) = pick(client.next_frame().await.expect("frame")) {
                return found;
            }
        }
    })
    .await
}

async fn emit(client: &mut Client, event: &str) -> ServerFrame {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
    let reference = client
        .send(&ClientFrame::Emit {
            reference: Some(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            room: "table".into(),
            event: event.into(),
            data: Value::Nil,
            echo: false,
        })
        .await;
    reference.expect("sent");
    next(client, "the answer", |f| match f {
        f @ (ServerFrame::Ok { .. } | ServerFrame::Error(_)) => Some(f),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_logic_runs_on_its_home_for_players_on_any_node_and_ends_with_it() {
    let redis = Redis::start();
    let home = node(&redis, "a");
    let other = node(&redis, "b");
    let mut ann = client(&home).await;
    let mut bob = client(&other).await;
    ann.create(
        Some("table"),
        RoomOptions {
            room_type: Some("turns".into()),
            ..RoomOptions::default()
        },
    )
    .await
    .expect("ann makes the table on node a");
    bob.join_room("table", None)
        .await
        .expect("bob joins through node b");
    let secret = next(&mut bob, "bob's secret", |f| match f {
        ServerFrame::Direct(d) if d.event == "secret" => Some(d.data),
        _ => None,
    })
    .await;
    assert_eq!(
        secret,
        Value::from(101u64),
        "bob's own, sent by the home to node b"
    );
    // Bob's move out of turn, from node b: the home's logic refuses it with its reason.
    match emit(&mut bob, "play").await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::RoomRefused);
            assert_eq!(e.reason.as_deref(), Some("not_your_turn"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Its answer with data reaches a player on the home's node.
    match emit(&mut ann, "players").await {
        ServerFrame::Ok { data, .. } => assert_eq!(data, Some(Value::from(2u64))),
        other => panic!("expected an answer, got {other:?}"),
    }
    // Ann plays: Bob, on the other node, sees the room's event.
    assert!(matches!(
        emit(&mut ann, "play").await,
        ServerFrame::Ok { .. }
    ));
    let played = next(&mut bob, "the room's event", |f| match f {
        ServerFrame::Event(e) if e.event == "played" => Some(e.from),
        _ => None,
    })
    .await;
    assert_eq!(played, SessionId::NIL);
    // Nor go around the logic with a `send` through the room, to a player on another node.
    let around = bob.send_direct(ann.session_id(), "psst", Value::Nil).await;
    assert!(
        format!("{around:?}").contains("UnknownSession"),
        "{around:?}"
    );
    // A plain client cannot write the game's state, from either node.
    let forged = bob.update_state("table", vec![], None).await;
    assert!(format!("{forged:?}").contains("LogicOnly"), "{forged:?}");
    // The home goes away; the room cannot be taken over, so it ends for Bob.
    home.registry().shut_down().await;
    drop(home);
    bob.send(&ClientFrame::Emit {
        reference: Some(1),
        room: "table".into(),
        event: "play".into(),
        data: Value::Nil,
        echo: false,
    })
    .await
    .expect("sent");
    let reason = next(&mut bob, "the room's end", |f| match f {
        ServerFrame::Left { room, reason } if room == "table" => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, LeaveReason::Ended);
    drop(other);
}

/// `Turns` that keeps its game across a lost home: a snapshot of who plays and whose turn it is.
struct KeptTurns(Turns);

impl RoomLogic for KeptTurns {
    fn joined(&mut self, ctx: &mut Ctx, player: &parlor::game::Player) {
        self.0.joined(ctx, player)
    }

    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        self.0.message(ctx, from, event, data)
    }

    fn snapshot(&self) -> Option<Value> {
        let players = self
            .0
            .players
            .iter()
            .map(|p| Value::from(p.to_string()))
            .collect();
        Some(Value::Array(vec![
            Value::Array(players),
            Value::from(self.0.turn as u64),
        ]))
    }

    fn restore(&mut self, _: &mut Ctx, snapshot: Value) -> Result<(), Refusal> {
        let bad = || Refusal::new("bad_snapshot", "not a Turns snapshot");
        let Value::Array(parts) = snapshot else {
            return Err(bad());
        };
        let [Value::Array(players), turn] = &parts[..] else {
            return Err(bad());
        };
        self.0.players = players
            .iter()
            .map(|p| p.as_str().and_then(|s| s.parse().ok()).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        self.0.turn = turn.as_u64().ok_or_else(bad)? as usize;
        Ok(())
    }
}

/// A room whose logic gives snapshots goes on where its game was when its home is killed:
/// players on the two other nodes keep their seats and the turn order, on the new home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_logic_gives_snapshots_goes_on_after_its_home_is_killed() {
    let redis = Redis::start();
    let home = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut ann = client(&home).await;
    let mut bob = client(&b).await;
    let mut cat = client(&c).await;
    ann.create(
        Some("table"),
        RoomOptions {
            room_type: Some("kept-turns".into()),
            ..RoomOptions::default()
        },
    )
    .await
    .expect("ann makes the table on node a");
    bob.join_room("table", None).await.expect("bob, through b");
    cat.join_room("table", None).await.expect("cat, through c");
    assert!(matches!(
        emit(&mut ann, "play").await,
        ServerFrame::Ok { .. }
    ));
    // Bob's turn now. The home dies (no goodbye).
    drop(home);
    // Once the room has a new home, the game is where it was: 3 players, Bob's turn.
    // Each asks until its node reaches the new home (a question sent to the dead one may be
    // answered `outcome_unknown` on a Redis Cluster; asking again is harmless).
    let mut players = Vec::new();
    for who in [&mut cat, &mut bob] {
        players.push(
            within(30, "the room on its new home", async {
                loop {
                    if let ServerFrame::Ok { data: Some(n), .. } = emit(who, "players").await {
                        return n;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await,
        );
    }
    assert_eq!(players, vec![Value::from(3u64); 2]);
    match emit(&mut cat, "play").await {
        ServerFrame::Error(e) => assert_eq!(e.reason.as_deref(), Some("not_your_turn")),
        other => panic!("cat may not play before bob: {other:?}"),
    }
    let played = emit(&mut bob, "play").await;
    assert!(
        matches!(played, ServerFrame::Ok { .. }),
        "bob's turn kept: {played:?}"
    );
    assert!(matches!(
        emit(&mut cat, "play").await,
        ServerFrame::Ok { .. }
    ));
    drop((b, c));
}

/// The arena's `world` in an event: its tick and each player's (id, score).
fn world_of(frame: ServerFrame) -> Option<(u64, Vec<(String, u64)>)> {
    let ServerFrame::Event(e) = frame else {
        return None;
    };
    if e.event != "world" {
        return None;
    }
    let field = |name: &str| {
        e.data
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.clone())
    };
    let tick = field("tick")?.as_u64()?;
    let players = field("players")?
        .as_array()?
        .iter()
        .filter_map(|p| {
            let p = p.as_array()?;
            Some((p[0].as_str()?.to_owned(), p[3].as_u64()?))
        })
        .collect();
    Some((tick, players))
}

/// Players on three nodes play the example arena; its home is killed. As documented, the
/// arena (its logic gives snapshots) goes on on a new home: the survivors keep playing in the
/// same world, its tick count going on from where its last checkpoint was, and the player on
/// the dead node is gone from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_on_three_nodes_play_the_arena_and_it_survives_its_home() {
    let redis = Redis::start();
    let home = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut ann = client(&home).await;
    let mut bob = client(&b).await;
    let mut cat = client(&c).await;
    let arena = RoomOptions {
        room_type: Some("arena".into()),
        ..RoomOptions::default()
    };
    ann.create(Some("table"), arena)
        .await
        .expect("the arena, on a");
    bob.join_room("table", None).await.expect("bob, through b");
    cat.join_room("table", None).await.expect("cat, through c");
    let (bob_id, cat_id) = (bob.session_id().to_string(), cat.session_id().to_string());
    for client in [&mut ann, &mut bob, &mut cat] {
        client
            .emit(
                "table",
                "input",
                rmpv::Value::Map(vec![("dx".into(), 1.0.into()), ("dy".into(), 0.5.into())]),
                false,
            )
            .await
            .expect("an input");
    }
    let (before, players) = next(&mut bob, "three players in the world", |f| {
        world_of(f).filter(|(_, players)| players.len() == 3)
    })
    .await;
    assert!(players.iter().any(|(id, _)| *id == cat_id));
    drop(home);
    // On its new home the world goes on: two players, ticking past where it was.
    let (after, players) = within(30, "the arena on its new home", async {
        loop {
            let (tick, players) = next(&mut bob, "a world", world_of).await;
            if players.len() == 2 && tick > before {
                return (tick, players);
            }
        }
    })
    .await;
    let ids: Vec<&str> = players.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        ids.contains(&bob_id.as_str()) && ids.contains(&cat_id.as_str()),
        "{ids:?}"
    );
    // Cat, on the third node, hears the same world and still steers.
    let (cat_tick, _) = next(&mut cat, "cat's world", |f| {
        world_of(f).filter(|(t, _)| *t > after)
    })
    .await;
    assert!(cat_tick > after);
    // The new home answers cat (a question sent before cat's node knew of it may be
    // `outcome_unknown` on a Redis Cluster; asking again is harmless).
    within(30, "the new home's answer to cat", async {
        while !matches!(
            emit(&mut cat, "score").await,
            ServerFrame::Ok { data: Some(_), .. }
        ) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    drop((b, c));
}

/// Broadcasts each tick.
struct Ticker;

impl RoomLogic for Ticker {
    fn message(&mut self, _: &mut Ctx, _: SessionId, _: &str, _: Value) -> Result<Reply, Refusal> {
        Ok(Reply::Ok)
    }

    fn tick(&mut self, ctx: &mut Ctx, _: Vec<parlor::game::Input>) {
        ctx.broadcast("tick", Value::Nil);
    }
}

static SLEEPER_GATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SLEEPER_ASLEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Its first tick sleeps until the test opens the gate (20 s at most); it answers "ping".
struct Sleeper;

impl RoomLogic for Sleeper {
    fn message(&mut self, _: &mut Ctx, _: SessionId, _: &str, _: Value) -> Result<Reply, Refusal> {
        Ok(Reply::Data(Value::from("pong")))
    }

    fn tick(&mut self, _: &mut Ctx, _: Vec<parlor::game::Input>) {
        use std::sync::atomic::Ordering;
        if SLEEPER_ASLEEP.swap(true, Ordering::SeqCst) {
            return;
        }
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !SLEEPER_GATE.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// On a cluster home too, a room whose tick does not return holds up no other room: another
/// room homed on the same node keeps ticking for a player on another node, and a request to
/// the sleeping room from another node waits for it and is answered once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_tick_on_a_cluster_home_holds_up_no_other_room() {
    use std::sync::atomic::Ordering;
    let redis = Redis::start();
    let home = node(&redis, "a");
    let other = node(&redis, "b");
    let mut ann = client(&home).await;
    let mut bob = client(&other).await;
    let typed = |kind: &str| RoomOptions {
        room_type: Some(kind.into()),
        ..RoomOptions::default()
    };
    ann.create(Some("table"), typed("sleeper"))
        .await
        .expect("the sleeping room, on a");
    ann.create(Some("fast"), typed("ticker"))
        .await
        .expect("the ticking room, on a");
    bob.join_room("table", None)
        .await
        .expect("bob joins the sleeper");
    bob.join_room("fast", None)
        .await
        .expect("bob joins the ticker");
    within(10, "the sleeper's tick", async {
        while !SLEEPER_ASLEEP.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Bob's question to the sleeping room, from node b: no answer while it sleeps.
    bob.send(&ClientFrame::Emit {
        reference: Some(77),
        room: "table".into(),
        event: "ping".into(),
        data: Value::Nil,
        echo: false,
    })
    .await
    .expect("sent");
    // Meanwhile the other room on the same home ticks on, heard on node b.
    let mut ticks = 0;
    let answer = within(10, "ten ticks of the other room", async {
        loop {
            match bob.next_frame().await.expect("frame") {
                ServerFrame::Event(e) if e.room == "fast" && e.event == "tick" => {
                    ticks += 1;
                    if ticks == 10 {
                        return None;
                    }
                }
                f @ (ServerFrame::Ok { reference: 77, .. } | ServerFrame::Error(_)) => {
                    return Some(f)
                }
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(
        answer, None,
        "the sleeping room answered before its tick returned"
    );
    SLEEPER_GATE.store(true, Ordering::SeqCst);
    let answer = next(&mut bob, "the answer once the tick returned", |f| match f {
        f @ (ServerFrame::Ok { reference: 77, .. } | ServerFrame::Error(_)) => Some(f),
        _ => None,
    })
    .await;
    // The tick overran (over 250 ms), so the room ended before the question's turn; either
    // way the question is answered, and not lost.
    assert!(
        matches!(answer, ServerFrame::Error(ref e) if e.code == ErrorCode::NotInRoom)
            || matches!(answer, ServerFrame::Ok { .. }),
        "{answer:?}"
    );
    drop((home, other));
}

/// Editors on three nodes edit one document; its home is killed mid-edit. Every update the
/// home acknowledged survives on the new home (the document is its room's snapshot), the
/// editors on the surviving nodes go on, and all of them and a late joiner converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_on_three_nodes_converge_and_no_acknowledged_update_is_lost_with_the_home() {
    let redis = Redis::start();
    let home = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut ann = client(&home).await;
    ann.create(
        Some("doc"),
        RoomOptions {
            room_type: Some("yjs".into()),
            ..RoomOptions::default()
        },
    )
    .await
    .expect("the document, homed on a");
    let mut ann = Editor::new(ann, "doc");
    let mut bob = Editor::new(client(&b).await, "doc");
    let mut cat = Editor::new(client(&c).await, "doc");
    bob.client
        .join_room("doc", None)
        .await
        .expect("bob, through b");
    cat.client
        .join_room("doc", None)
        .await
        .expect("cat, through c");
    for editor in [&mut ann, &mut bob, &mut cat] {
        assert!(matches!(editor.sync().await, ServerFrame::Ok { .. }));
    }
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        for (name, editor) in [("a", &mut ann), ("b", &mut bob), ("c", &mut cat)] {
            let mark = format!("{name}{n};");
            if let ServerFrame::Ok { .. } = editor.append(&mark).await {
                acknowledged.push(mark);
            }
        }
    }
    // The home dies mid-edit.
    drop(home);
    // A newcomer, before the survivors send anything: what the new home restored (the last
    // snapshot and the room's log since it) holds every update acknowledged before the kill.
    let mut eve = Editor::new(client(&b).await, "doc");
    within(30, "eve joining the document on its new home", async {
        while eve.client.join_room("doc", None).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(matches!(eve.sync().await, ServerFrame::Ok { .. }));
    for mark in &acknowledged {
        assert!(
            eve.text().contains(mark.as_str()),
            "acknowledged {mark} lost with the home: {}",
            eve.text()
        );
    }
    for n in 20..40 {
        for (name, editor) in [("b", &mut bob), ("c", &mut cat)] {
            let mark = format!("{name}{n};");
            // An update whose fate is unknown (sent to the dead home) is sent again: a CRDT
            // takes it twice as once.
            let acked = within(30, "an update taken by the new home", async {
                loop {
                    match editor.append(&mark).await {
                        ServerFrame::Ok { .. } => return true,
                        _ => {
                            use yrs::sync::{Message, SyncMessage};
                            use yrs::updates::encoder::Encode;
                            use yrs::{ReadTxn, StateVector, Transact};
                            // Resend the whole state (what a reconnecting provider does).
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let all = editor
                                .doc
                                .transact()
                                .encode_state_as_update_v1(&StateVector::default());
                            let msg = Message::Sync(SyncMessage::Update(all)).encode_v1();
                            if let ServerFrame::Ok { .. } = editor.send(msg).await {
                                return true;
                            }
                        }
                    }
                }
            })
            .await;
            if acked {
                acknowledged.push(mark);
            }
        }
    }
    // Everyone catches up with a step 1; a late joiner on b gets the document whole.
    for editor in [&mut bob, &mut cat] {
        assert!(matches!(editor.sync().await, ServerFrame::Ok { .. }));
    }
    let mut dan = Editor::new(client(&b).await, "doc");
    dan.client.join_room("doc", None).await.expect("dan joins");
    assert!(matches!(dan.sync().await, ServerFrame::Ok { .. }));
    assert_eq!(bob.text(), cat.text(), "the survivors converge");
    assert_eq!(dan.text(), bob.text(), "the late joiner has it all");
    for mark in &acknowledged {
        assert!(
            dan.text().contains(mark.as_str()),
            "acknowledged {mark} lost: {}",
            dan.text()
        );
    }
    drop((b, c));
}
