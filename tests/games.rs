//! The example games (examples/games/), tested with the kit a game's developer would use.

#[path = "../examples/games/arena.rs"]
#[allow(dead_code)]
mod arena;
#[path = "support/browser.rs"]
#[allow(dead_code)]
mod browser;
#[path = "../examples/games/cards.rs"]
#[allow(dead_code)]
mod cards;
#[path = "../examples/games/node.rs"]
mod node;

use std::time::Duration;

use parlor::game::testing::TestRoom;
use parlor::game::{LeaveReason, RoomTypes, SessionId, Value};
use parlor_protocol::{ErrorCode, ServerFrame};

fn types() -> RoomTypes {
    RoomTypes::new()
        .add("arena", arena::Arena::make)
        .add("cards", cards::Cards::make)
}

fn input(dx: f64, dy: f64) -> Value {
    Value::Map(vec![
        (Value::from("dx"), Value::from(dx)),
        (Value::from("dy"), Value::from(dy)),
    ])
}

/// The last `world` a player heard: (id, x, y, score) per player.
fn last_world(room: &TestRoom, who: SessionId) -> Vec<(String, f64, f64, u64)> {
    let world = room
        .events(who)
        .into_iter()
        .rfind(|(event, _)| event == "world")
        .expect("a world")
        .1;
    let players = world
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some("players"))
        .unwrap()
        .1
        .as_array()
        .unwrap()
        .clone();
    players
        .iter()
        .map(|p| {
            let p = p.as_array().unwrap();
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_f64().unwrap(),
                p[2].as_f64().unwrap(),
                p[3].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_arena_refuses_a_move_faster_than_allowed_and_keeps_everyone_inside() {
    let mut room = TestRoom::new(types(), "arena", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    let refused = room.send(ann, "input", input(5.0, 0.0)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::RoomRefused);
    assert_eq!(refused.reason.as_deref(), Some("invalid_input"));
    room.send(ann, "input", input(1.0, 1.0)).unwrap();
    // Ten seconds at full speed toward a corner: she stops at the walls.
    room.advance(Duration::from_secs(10));
    let world = last_world(&room, ann);
    let (_, x, y, _) = world[0].clone();
    assert!(
        (x - (arena::SIZE - arena::RADIUS)).abs() < 1e-9
            && (y - (arena::SIZE - arena::RADIUS)).abs() < 1e-9,
        "({x}, {y})"
    );
    let ticks = room
        .events(ann)
        .iter()
        .filter(|(e, _)| e == "world")
        .count();
    assert!(
        (195..=201).contains(&ticks),
        "{ticks} ticks in 10 s at 20 Hz"
    );
}

#[test]
fn players_in_the_arena_never_overlap() {
    let mut room = TestRoom::new(types(), "arena", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    let bob = room.join("bob").unwrap();
    // Both run to the same corner.
    room.send(ann, "input", input(-1.0, -1.0)).unwrap();
    room.send(bob, "input", input(-1.0, -1.0)).unwrap();
    for _ in 0..200 {
        room.advance(Duration::from_millis(50));
        let world = last_world(&room, ann);
        let (a, b) = (&world[0], &world[1]);
        let distance = ((a.1 - b.1).powi(2) + (a.2 - b.2).powi(2)).sqrt();
        assert!(
            distance >= 2.0 * arena::RADIUS - 1e-6,
            "overlap: {distance}"
        );
    }
}

#[test]
fn a_card_game_plays_in_turn_with_hidden_hands_to_its_end() {
    let mut room = TestRoom::new(types(), "cards", Value::Nil).expect("the kit");
    let ann = room.join("ann").unwrap();
    let bob = room.join("bob").unwrap();
    let hand = |room: &TestRoom, who: SessionId| -> Vec<u64> {
        let (_, data) = room
            .events(who)
            .into_iter()
            .find(|(event, _)| event == "hand")
            .expect("a hand");
        data.as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect()
    };
    let (ann_hand, bob_hand) = (hand(&room, ann), hand(&room, bob));
    assert_eq!(ann_hand.len(), cards::HAND);
    // Neither ever receives the other's hand.
    let shows = |room: &TestRoom, who: SessionId, other: &[u64]| {
        let other = Value::Array(other.iter().map(|c| Value::from(*c)).collect());
        room.frames(who)
            .iter()
            .any(|f| format!("{f:?}").contains(&format!("{other:?}")))
    };
    assert!(!shows(&room, ann, &bob_hand) && !shows(&room, bob, &ann_hand));
    // Out of turn, and a card not held, are refused; the game goes on in turn to its end.
    room.send(ann, "start", Value::Nil).unwrap();
    let refused = room.send(bob, "play", bob_hand[0]).unwrap_err();
    assert_eq!(refused.reason.as_deref(), Some("not_your_turn"));
    let refused = room.send(ann, "play", bob_hand[0]).unwrap_err();
    assert_eq!(refused.reason.as_deref(), Some("not_in_hand"));
    for i in 0..cards::HAND {
        room.send(ann, "play", ann_hand[i]).unwrap();
        if i + 1 < cards::HAND {
            room.send(bob, "play", bob_hand[i]).unwrap();
        } else {
            // Bob's last turn times out: his last card is played for him.
            room.advance(cards::TURN_TIME + Duration::from_secs(1));
        }
    }
    assert!(room.events(ann).iter().any(|(e, _)| e == "game_over"));
    assert!(room.events(ann).iter().any(|(e, _)| e == "timed_out"));
    assert!(room.frames(bob).iter().any(|f| matches!(
        f,
        ServerFrame::Left {
            reason: LeaveReason::Ended,
            ..
        }
    )));
}

/// The games' pages, two players each, in headless Chromium (tests/browser/games.mjs): the
/// arena's moves seen by the other page and a forged input refused; the card game's hidden
/// hands, a move out of turn refused and a card played. Screenshots in
/// target/test-artifacts/browser/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_play_both_games_on_their_pages() {
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.session.heartbeat_interval_ms = 1_000;
    config.session.client_timeout_ms = 20_000;
    config.store.dir = String::new();
    let node = node::builder(config).spawn().expect("the games node");
    let shots = [
        "arena-alice.png",
        "arena-bob.png",
        "cards-alice.png",
        "cards-bob.png",
    ];
    browser::run_page_script("games.mjs", &node.http_url("/"), &shots).await;
}
