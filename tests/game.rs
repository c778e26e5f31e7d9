//! Rooms with logic, tested the way a game's developer would: through `parlor::game::testing`,
//! on the server's real registry, looking at the frames each player was sent.

use std::time::Duration;

#[path = "support/browser.rs"]
#[allow(dead_code)]
mod browser;
use browser::http_get;

use parlor::game::testing::{Refused, TestRoom};
use parlor::game::{Ctx, Input, LeaveReason, Player, Refusal, Reply, RoomLogic, RoomTypes};
use parlor::game::{SessionId, Value};
use parlor_protocol::{ClientFrame, ErrorCode, ServerFrame, StateOp};

/// "High card" for two: each player is dealt a hidden hand; in turn, a player plays one card
/// of its own hand; a turn not played within 10 s passes.
struct HighCard {
    hands: Vec<(SessionId, Vec<u64>)>,
    turn: usize,
}

const TURN_TIME: Duration = Duration::from_secs(10);

impl HighCard {
    fn make(_: &mut Ctx, _: &Value) -> Result<Box<dyn RoomLogic>, Refusal> {
        Ok(Box::new(HighCard {
            hands: Vec::new(),
            turn: 0,
        }))
    }

    fn whose_turn(&self) -> Option<SessionId> {
        self.hands.get(self.turn).map(|(id, _)| *id)
    }

    fn next_turn(&mut self, ctx: &mut Ctx) {
        self.turn = (self.turn + 1) % self.hands.len().max(1);
        let next = self
            .whose_turn()
            .map(|id| id.to_string())
            .unwrap_or_default();
        ctx.set_state(&["turn"], next);
        ctx.set_timer("turn", TURN_TIME);
    }
}

impl RoomLogic for HighCard {
    fn joining(&mut self, _: &mut Ctx, _: &Player) -> Result<(), Refusal> {
        if self.hands.len() >= 2 {
            return Err(Refusal::new("table_full", "two play at this table"));
        }
        Ok(())
    }

    fn joined(&mut self, ctx: &mut Ctx, player: &Player) {
        // A different hand per seat: 1-5 or 6-10.
        let first = self.hands.len() as u64 * 5 + 1;
        let hand: Vec<u64> = (first..first + 5).collect();
        ctx.send(
            player.session,
            "hand",
            Value::Array(hand.iter().map(|c| Value::from(*c)).collect()),
        );
        self.hands.push((player.session, hand));
        if self.hands.len() == 2 {
            self.turn = 1;
            self.next_turn(ctx);
        }
    }

    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        match event {
            "play" => {
                if self.whose_turn() != Some(from) || self.hands.len() < 2 {
                    return Err(Refusal::new("not_your_turn", "wait for your turn"));
                }
                let card = data.as_u64().unwrap_or(0);
                let hand = &mut self.hands[self.turn].1;
                let Some(at) = hand.iter().position(|c| *c == card) else {
                    return Err(Refusal::new(
                        "illegal_move",
                        "that card is not in your hand",
                    ));
                };
                hand.remove(at);
                ctx.broadcast("played", Value::from(card));
                self.next_turn(ctx);
                Ok(Reply::Ok)
            }
            "cards_left" => Ok(Reply::Data(Value::from(
                self.hands
                    .iter()
                    .find(|(id, _)| *id == from)
                    .map_or(0, |(_, hand)| hand.len() as u64),
            ))),
            other => Err(Refusal::new("unknown_move", format!("no move {other:?}"))),
        }
    }

    fn timer(&mut self, ctx: &mut Ctx, name: &str) {
        if name == "turn" {
            ctx.broadcast("timeout", Value::Nil);
            self.next_turn(ctx);
        }
    }

    fn left(&mut self, ctx: &mut Ctx, who: SessionId, _: LeaveReason) {
        self.hands.retain(|(id, _)| *id != who);
        ctx.end("a player left the table");
    }

    fn away(&mut self, ctx: &mut Ctx, who: SessionId) {
        ctx.broadcast_except(who, "player_away", Value::from(who.to_string()));
    }

    fn back(&mut self, ctx: &mut Ctx, who: SessionId) {
        ctx.broadcast_except(who, "player_back", Value::from(who.to_string()));
    }
}

fn types() -> RoomTypes {
    RoomTypes::new()
        .add("high-card", HighCard::make)
        .add("ticker", Ticker::make)
        .add("buggy", |_: &mut Ctx, _: &Value| {
            Ok(Box::new(Buggy) as Box<dyn RoomLogic>)
        })
        .add("slow", |ctx: &mut Ctx, _: &Value| {
            ctx.set_tick_rate(10);
            Ok(Box::new(Slow) as Box<dyn RoomLogic>)
        })
}

fn table() -> (TestRoom, SessionId, SessionId) {
    let mut room = TestRoom::new(types(), "high-card", Value::Nil).expect("the kit");
    let ann = room.join("ann").expect("ann sits");
    let bob = room.join("bob").expect("bob sits");
    (room, ann, bob)
}

fn refused_by_game(result: Result<Option<Value>, Refused>, reason: &str) {
    let refused = result.expect_err("refused");
    assert_eq!(refused.code, ErrorCode::RoomRefused, "{refused:?}");
    assert_eq!(refused.reason.as_deref(), Some(reason), "{refused:?}");
}

#[test]
fn a_cheating_client_is_refused_with_the_games_error_and_nothing_changes() {
    let (mut room, ann, bob) = table();
    let before = room.state();
    // Ann's turn first (she sat first). Bob out of turn:
    refused_by_game(room.send(bob, "play", 6u64), "not_your_turn");
    // Ann plays a card from Bob's hand:
    refused_by_game(room.send(ann, "play", 6u64), "illegal_move");
    // A move the game does not know (a raw relay attempt):
    refused_by_game(room.send(ann, "chat", "hello"), "unknown_move");
    assert_eq!(room.state(), before, "a refused move changes nothing");
    // A forged state write, and an owner's action, are the logic's alone.
    let forged = room.request(
        bob,
        ClientFrame::UpdateState {
            reference: None,
            room: "test-room".into(),
            ops: vec![StateOp::Set {
                path: vec!["turn".into()],
                value: Value::from(bob.to_string()),
            }],
            if_version: None,
        },
    );
    assert_eq!(forged.unwrap_err().code, ErrorCode::LogicOnly);
    let kick = room.request(
        ann,
        ClientFrame::Kick {
            reference: None,
            room: "test-room".into(),
            session: bob,
        },
    );
    assert_eq!(kick.unwrap_err().code, ErrorCode::LogicOnly);
    // Nor can a player talk around the logic with a `send` through the room.
    let around = room.request(
        bob,
        ClientFrame::Send {
            reference: None,
            to: ann,
            event: "psst".into(),
            data: Value::from(6u64),
        },
    );
    assert_eq!(around.unwrap_err().code, ErrorCode::UnknownSession);
    assert_eq!(room.state(), before);
    // A legal move goes through, and everyone sees it from the room itself.
    room.send(ann, "play", 3u64).expect("ann plays");
    let played: Vec<_> = room
        .frames(bob)
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Event(e) if e.event == "played" => Some((e.from, e.data)),
            _ => None,
        })
        .collect();
    assert_eq!(played, vec![(SessionId::NIL, Value::from(3u64))]);
    room.check().expect("invariants");
}

#[test]
fn no_player_is_ever_sent_another_players_hand() {
    let (mut room, ann, bob) = table();
    room.send(ann, "play", 1u64).unwrap();
    room.send(bob, "play", 6u64).unwrap();
    room.advance(Duration::from_secs(25));
    let hand = |who: SessionId| -> Vec<Value> {
        room.events(who)
            .into_iter()
            .filter(|(event, _)| event == "hand")
            .map(|(_, data)| data)
            .collect()
    };
    let ann_hand = Value::Array((1..=5u64).map(Value::from).collect());
    let bob_hand = Value::Array((6..=10u64).map(Value::from).collect());
    assert_eq!(hand(ann), vec![ann_hand.clone()]);
    assert_eq!(hand(bob), vec![bob_hand.clone()]);
    // Nowhere in Bob's frames (events, patches, snapshots) is Ann's hand, nor the reverse.
    let carries = |who: SessionId, hand: &Value| {
        room.frames(who)
            .iter()
            .any(|f| format!("{f:?}").contains(&format!("{hand:?}")))
    };
    assert!(!carries(bob, &ann_hand));
    assert!(!carries(ann, &bob_hand));
}

#[test]
fn a_turn_not_played_in_time_passes_and_answers_carry_data() {
    let (mut room, ann, bob) = table();
    assert_eq!(
        room.send(ann, "cards_left", Value::Nil),
        Ok(Some(Value::from(5u64)))
    );
    room.advance(Duration::from_secs(11));
    assert!(room.events(bob).iter().any(|(e, _)| e == "timeout"));
    // Bob's turn now.
    refused_by_game(room.send(ann, "play", 2u64), "not_your_turn");
    room.send(bob, "play", 7u64).expect("bob's turn");
}

#[test]
fn the_logic_hears_a_player_go_away_and_come_back() {
    let (mut room, ann, bob) = table();
    room.drop_connection(bob);
    room.reconnect(bob).expect("bob resumes");
    let seen: Vec<String> = room
        .events(ann)
        .into_iter()
        .map(|(event, _)| event)
        .filter(|e| e.starts_with("player_"))
        .collect();
    assert_eq!(seen, vec!["player_away", "player_back"]);
}

/// Gives each player a secret view of its own.
struct Secrets;

impl RoomLogic for Secrets {
    fn joined(&mut self, ctx: &mut Ctx, player: &Player) {
        let secret = format!("secret of {}", player.user.clone().unwrap_or_default());
        ctx.set_view(player.session, secret);
    }

    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        _: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        ctx.set_view(from, data);
        Ok(Reply::Ok)
    }
}

fn views(room: &TestRoom, who: SessionId) -> Vec<Value> {
    room.frames(who)
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::View(v) => Some(v.data),
            _ => None,
        })
        .collect()
}

#[test]
fn each_player_keeps_a_view_of_its_own_across_a_resume() {
    let types = RoomTypes::new().add("secrets", |_: &mut Ctx, _: &Value| {
        Ok(Box::new(Secrets) as Box<dyn RoomLogic>)
    });
    let mut room = TestRoom::new(types, "secrets", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    let bob = room.join("bob").unwrap();
    room.send(ann, "set", "ann's new secret").unwrap();
    assert_eq!(
        views(&room, ann),
        vec![
            Value::from("secret of ann"),
            Value::from("ann's new secret")
        ]
    );
    assert_eq!(views(&room, bob), vec![Value::from("secret of bob")]);
    // Bob drops and comes back: his view comes again (no replay carries it), Ann's never.
    room.drop_connection(bob);
    room.reconnect(bob).unwrap();
    assert_eq!(
        views(&room, bob),
        vec![Value::from("secret of bob"), Value::from("secret of bob")]
    );
    assert!(!room
        .frames(bob)
        .iter()
        .any(|f| format!("{f:?}").contains("ann's new secret")));
}

#[test]
fn the_logic_decides_who_joins() {
    let (mut room, _, _) = table();
    let refused = room.join("cy").expect_err("a third player");
    assert_eq!(refused.code, ErrorCode::RoomRefused);
    assert_eq!(refused.reason.as_deref(), Some("table_full"));
}

#[test]
fn a_room_that_ends_tells_its_members_why() {
    let (mut room, ann, bob) = table();
    room.leave(bob);
    let left: Vec<_> = room
        .frames(ann)
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Left { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(left, vec![LeaveReason::Ended]);
    assert!(!room.exists());
}

/// Ticks at 20 Hz and reports how many inputs each tick got.
struct Ticker;

impl Ticker {
    fn make(ctx: &mut Ctx, _: &Value) -> Result<Box<dyn RoomLogic>, Refusal> {
        ctx.set_tick_rate(20);
        Ok(Box::new(Ticker))
    }
}

impl RoomLogic for Ticker {
    fn message(&mut self, _: &mut Ctx, _: SessionId, _: &str, _: Value) -> Result<Reply, Refusal> {
        Ok(Reply::Input)
    }

    fn tick(&mut self, ctx: &mut Ctx, inputs: Vec<Input>) {
        ctx.broadcast("tick", Value::from(inputs.len() as u64));
    }
}

#[test]
fn a_20_hz_room_ticks_about_200_times_in_10_s_with_inputs_batched() {
    let mut room = TestRoom::new(types(), "ticker", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    for _ in 0..200 {
        room.send(ann, "move", 1u64).unwrap();
        room.send(ann, "move", 2u64).unwrap();
        room.advance(Duration::from_millis(50));
    }
    let ticks: Vec<u64> = room
        .events(ann)
        .into_iter()
        .filter(|(e, _)| e == "tick")
        .map(|(_, d)| d.as_u64().unwrap())
        .collect();
    assert_eq!(ticks.len(), 200);
    assert!(
        ticks.iter().all(|n| *n == 2),
        "two inputs per tick: {ticks:?}"
    );
}

/// Panics on any message.
struct Buggy;

impl RoomLogic for Buggy {
    fn message(&mut self, _: &mut Ctx, _: SessionId, _: &str, _: Value) -> Result<Reply, Refusal> {
        panic!("a bug in the game");
    }
}

#[test]
fn a_panicking_room_ends_with_a_clear_reason_and_the_registry_goes_on() {
    let mut room = TestRoom::new(types(), "buggy", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    let bob = room.join("bob").unwrap();
    let refused = room.send(ann, "anything", Value::Nil).unwrap_err();
    assert_eq!(refused.code, ErrorCode::RoomRefused);
    assert_eq!(refused.reason.as_deref(), Some("room_ended"));
    for who in [ann, bob] {
        assert!(room.frames(who).iter().any(|f| matches!(
            f,
            ServerFrame::Left {
                reason: LeaveReason::Ended,
                ..
            }
        )));
    }
    assert!(!room.exists());
    room.check().expect("the registry's invariants hold");
}

/// Its tick takes 300 ms.
struct Slow;

impl RoomLogic for Slow {
    fn message(&mut self, _: &mut Ctx, _: SessionId, _: &str, _: Value) -> Result<Reply, Refusal> {
        Ok(Reply::Ok)
    }

    fn tick(&mut self, _: &mut Ctx, _: Vec<Input>) {
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_room_whose_tick_runs_too_long_ends_once_it_returns() {
    let mut room = TestRoom::new(types(), "slow", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    room.advance(Duration::from_millis(150));
    assert!(!room.exists(), "the room ended");
    assert!(room.frames(ann).iter().any(|f| matches!(
        f,
        ServerFrame::Left {
            reason: LeaveReason::Ended,
            ..
        }
    )));
}

#[test]
fn an_unknown_room_type_is_refused() {
    let mut room = TestRoom::new(types(), "chess", Value::Nil).expect("the kit");
    assert_eq!(
        room.join("ann").unwrap_err().code,
        ErrorCode::UnknownRoomType
    );
}

/// Over a real WebSocket: a node started as a library with a room type; the room ticks by
/// the node's own clock, and a client's moves go to the logic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_built_with_a_room_type_runs_it_over_the_wire() {
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.rate_limits.frames_per_second = 0;
    config.rate_limits.bytes_per_second = 0;
    // A long grace makes the node's own clock slow (1 s): ticks must come from the logic's
    // wake-ups, not from it.
    config.session.reconnect_grace_ms = 30_000;
    let node = parlor::NodeBuilder::new(config)
        .room_type("ticker", Ticker::make)
        .room_type("high-card", HighCard::make)
        .spawn()
        .expect("node");
    let url = format!("ws://{}/ws", node.addr);
    let mut ann = parlor_client::Client::connect(&url).await.expect("connect");
    let joined = ann
        .create(
            Some("t1"),
            parlor_protocol::RoomOptions {
                room_type: Some("ticker".into()),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    assert_eq!(joined.room, "t1");
    ann.emit("t1", "move", Value::from(1u64), false)
        .await
        .expect("a move, kept for the tick");
    // Ticks arrive by themselves (20 Hz), the first with the move in it.
    let mut ticks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ticks.len() < 10 && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(ServerFrame::Event(e))) =
            tokio::time::timeout(Duration::from_secs(1), ann.next_frame()).await
        {
            assert_eq!(e.from, SessionId::NIL);
            ticks.push(e.data.as_u64().unwrap());
        }
    }
    assert_eq!(ticks.len(), 10, "ticks by the node's clock");
    assert_eq!(ticks.iter().sum::<u64>(), 1, "the one move, in one tick");
    // A plain client's forged state write is refused; a room type the node lacks too.
    let err = ann
        .update_state("t1", vec![], None)
        .await
        .expect_err("logic only");
    assert!(format!("{err:?}").contains("LogicOnly"), "{err:?}");
    let err = ann
        .create(
            Some("t2"),
            parlor_protocol::RoomOptions {
                room_type: Some("chess".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("unknown type");
    assert!(format!("{err:?}").contains("UnknownRoomType"), "{err:?}");
    // Operators see the rooms by type and the ticks.
    let metrics = http_get(node.addr, "/metrics");
    assert!(
        metrics.contains("parlor_logic_rooms{room_type=\"ticker\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("parlor_logic_tick_seconds_count"),
        "{metrics}"
    );
}

/// The Rust client's `Parlor` against a room with logic: typed answers, and the game's reason
/// in a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_asks_a_rooms_logic_and_reads_its_refusals() {
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    let node = parlor::NodeBuilder::new(config)
        .room_type("high-card", HighCard::make)
        .spawn()
        .expect("node");
    let url = format!("ws://{}/ws", node.addr);
    let (ann, _ann_events) = parlor_client::Parlor::connect(&url).await.expect("ann");
    let (bob, _bob_events) = parlor_client::Parlor::connect(&url).await.expect("bob");
    let options = parlor_protocol::RoomOptions {
        room_type: Some("high-card".into()),
        ..Default::default()
    };
    ann.create(Some("table"), options).await.expect("create");
    bob.join("table").await.expect("join");
    let left: Option<u64> = ann.ask("table", "cards_left", &()).await.expect("ask");
    assert_eq!(left, Some(5));
    let err = bob
        .ask::<_, u64>("table", "play", &6u64)
        .await
        .expect_err("out of turn");
    let frame = err.refusal().expect("a refusal");
    assert_eq!(frame.code, ErrorCode::RoomRefused);
    assert_eq!(frame.reason.as_deref(), Some("not_your_turn"));
    // A plain accepted move answers no data.
    let none: Option<u64> = ann.ask("table", "play", &1u64).await.expect("ann's turn");
    assert_eq!(none, None);
}

/// Opened by the test to let the sleeping room's tick return; set by its tick once it sleeps.
static SLEEPER_GATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SLEEPER_ASLEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A room whose first tick sleeps until the test opens the gate (20 s at most).
struct Sleeper;

impl Sleeper {
    fn make(ctx: &mut Ctx, _: &Value) -> Result<Box<dyn RoomLogic>, Refusal> {
        ctx.set_tick_rate(20);
        Ok(Box::new(Sleeper))
    }
}

impl RoomLogic for Sleeper {
    fn message(&mut self, _: &mut Ctx, _: SessionId, _: &str, _: Value) -> Result<Reply, Refusal> {
        Ok(Reply::Ok)
    }

    fn tick(&mut self, _: &mut Ctx, _: Vec<Input>) {
        use std::sync::atomic::Ordering;
        SLEEPER_ASLEEP.store(true, Ordering::SeqCst);
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !SLEEPER_GATE.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A room whose tick does not return holds up no other room: another room with logic keeps
/// ticking, a plain room's events flow, and a request to the sleeping room waits for it
/// (answered once it is back, here after it ended for overrunning). Without the logic pool
/// the registry's one thread would be asleep in that tick and nothing would move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_tick_sleeps_holds_up_no_other_room() {
    use std::sync::atomic::Ordering;
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.registry.logic_threads = 2;
    let node = parlor::NodeBuilder::new(config)
        .room_type("ticker", Ticker::make)
        .room_type("sleeper", Sleeper::make)
        .spawn()
        .expect("node");
    let url = format!("ws://{}/ws", node.addr);
    let typed = |kind: &str| parlor_protocol::RoomOptions {
        room_type: Some(kind.into()),
        ..Default::default()
    };
    let mut ann = parlor_client::Client::connect(&url).await.expect("ann");
    ann.create(Some("slow"), typed("sleeper"))
        .await
        .expect("slow");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !SLEEPER_ASLEEP.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        SLEEPER_ASLEEP.load(Ordering::SeqCst),
        "the slow room's tick began"
    );
    // A request to the sleeping room waits for it.
    let waiting = tokio::spawn(async move {
        let answer = ann.emit("slow", "hello", Value::Nil, false).await;
        (ann, answer)
    });
    // Another room with logic ticks on.
    let mut bob = parlor_client::Client::connect(&url).await.expect("bob");
    bob.create(Some("fast"), typed("ticker"))
        .await
        .expect("fast");
    let mut ticks = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ticks < 10 && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(ServerFrame::Event(e))) =
            tokio::time::timeout(Duration::from_secs(1), bob.next_frame()).await
        {
            ticks += usize::from(e.event == "tick");
        }
    }
    assert_eq!(ticks, 10, "the other room ticks while one sleeps");
    // A plain room's events flow.
    let mut cat = parlor_client::Client::connect(&url).await.expect("cat");
    let mut dan = parlor_client::Client::connect(&url).await.expect("dan");
    cat.create(Some("chat"), Default::default())
        .await
        .expect("chat");
    dan.join("chat").await.expect("dan joins");
    cat.emit("chat", "hi", Value::from("there"), false)
        .await
        .expect("cat's event");
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(ServerFrame::Event(e)) = dan.next_frame().await {
                return e;
            }
        }
    })
    .await
    .expect("dan hears cat");
    assert_eq!(heard.data, Value::from("there"));
    assert!(
        !waiting.is_finished(),
        "the request to the sleeping room waits for it"
    );
    // The tick returns: it overran, so the room ends, and the waiting request is answered.
    SLEEPER_GATE.store(true, Ordering::SeqCst);
    let (_ann, answer) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered once the logic is back")
        .expect("task");
    let err = answer.expect_err("the room ended before the request's turn");
    assert!(format!("{err:?}").contains("NotInRoom"), "{err:?}");
    let metrics = http_get(node.addr, "/metrics");
    assert!(
        metrics.contains("parlor_logic_overruns_total 1"),
        "{metrics}"
    );
}
