use std::time::{Duration, Instant};

use super::*;

/// Ticks at `hz`, counts inputs per tick, and panics on `boom`.
struct Counter {
    ticks: Vec<Vec<Input>>,
    timers: Vec<String>,
}

impl RoomLogic for Counter {
    fn message(
        &mut self,
        ctx: &mut Ctx,
        _from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        match event {
            "move" => Ok(Reply::Input),
            "ask" => Ok(Reply::Data(data)),
            "boom" => panic!("the game's bug"),
            "later" => {
                ctx.set_timer("t", Duration::from_millis(100));
                Ok(Reply::Ok)
            }
            _ => Err(Refusal::new(
                "unknown_move",
                format!("no such move: {event}"),
            )),
        }
    }

    fn tick(&mut self, ctx: &mut Ctx, inputs: Vec<Input>) {
        ctx.broadcast("tick", Value::from(inputs.len() as u64));
        self.ticks.push(inputs);
    }

    fn timer(&mut self, _ctx: &mut Ctx, name: &str) {
        self.timers.push(name.to_owned());
    }
}

fn counter(hz: u32) -> Box<RoomFactory> {
    Box::new(move |ctx: &mut Ctx, _: &Value| {
        ctx.set_tick_rate(hz);
        Ok(Box::new(Counter {
            ticks: Vec::new(),
            timers: Vec::new(),
        }) as Box<dyn RoomLogic>)
    })
}

fn player() -> Player {
    Player {
        session: SessionId::new_random(),
        user: None,
        read_only: false,
    }
}

fn ticks_of(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast { event, data, .. } if event == "tick" => data.as_u64(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_20_hz_room_ticks_200_times_in_10_s_with_its_inputs_batched_in_order() {
    let start = Instant::now();
    let (mut room, _) = LogicRoom::create("c", &*counter(20), &Value::Nil, start).unwrap();
    let p = player();
    room.joined(p.clone(), start);
    let mut per_tick = Vec::new();
    for step in 1..=1000u32 {
        let now = start + Duration::from_millis(10) * step;
        // Three moves every 10 ms: 15 per 50 ms tick.
        for n in 0..3u64 {
            let (answer, _) = room.message(p.session, "move", Value::from(n), now);
            assert_eq!(answer, Ok(Reply::Input));
        }
        per_tick.extend(ticks_of(&room.advance(now)));
    }
    assert_eq!(room.stats().ticks, 200);
    assert_eq!(room.stats().skipped, 0);
    assert!(per_tick.iter().all(|n| *n == 15), "{per_tick:?}");
}

#[test]
fn a_late_owner_gets_one_tick_and_the_missed_periods_counted() {
    let start = Instant::now();
    let (mut room, _) = LogicRoom::create("c", &*counter(10), &Value::Nil, start).unwrap();
    let effects = room.advance(start + Duration::from_millis(1050));
    assert_eq!(ticks_of(&effects).len(), 1);
    assert_eq!(room.stats().skipped, 9);
    assert_eq!(room.stats().last_lateness, Duration::from_millis(950));
    // The next one is a period after that late one.
    assert_eq!(
        room.next_deadline(),
        Some(start + Duration::from_millis(1150))
    );
}

#[test]
fn refusals_and_answers_come_from_the_game() {
    let now = Instant::now();
    let (mut room, _) = LogicRoom::create("c", &*counter(0), &Value::Nil, now).unwrap();
    let p = player();
    let (answer, _) = room.message(p.session, "fly", Value::Nil, now);
    assert_eq!(answer.unwrap_err().code, "unknown_move");
    let (answer, _) = room.message(p.session, "ask", Value::from("q"), now);
    assert_eq!(answer, Ok(Reply::Data(Value::from("q"))));
}

#[test]
fn inputs_are_bounded_per_tick() {
    let now = Instant::now();
    let (mut room, _) = LogicRoom::create("c", &*counter(1), &Value::Nil, now).unwrap();
    let p = player();
    for _ in 0..MAX_INPUTS_PER_TICK {
        assert!(room.message(p.session, "move", Value::Nil, now).0.is_ok());
    }
    let (answer, _) = room.message(p.session, "move", Value::Nil, now);
    assert_eq!(answer.unwrap_err().code, "overloaded");
}

#[test]
fn a_panic_ends_the_room_and_nothing_reaches_the_logic_again() {
    let now = Instant::now();
    let (mut room, _) = LogicRoom::create("c", &*counter(20), &Value::Nil, now).unwrap();
    let p = player();
    let (answer, effects) = room.message(p.session, "boom", Value::Nil, now);
    assert_eq!(answer.unwrap_err().code, "room_ended");
    assert!(matches!(effects.as_slice(), [Effect::End(_)]));
    assert!(room.ended().is_some());
    assert_eq!(room.next_deadline(), None);
    assert!(room.advance(now + Duration::from_secs(1)).is_empty());
    assert_eq!(room.joining(&player(), now).unwrap_err().code, "room_ended");
}

#[test]
fn a_timer_fires_once() {
    let now = Instant::now();
    let (mut room, _) = LogicRoom::create("c", &*counter(0), &Value::Nil, now).unwrap();
    room.message(SessionId::new_random(), "later", Value::Nil, now)
        .0
        .unwrap();
    assert_eq!(room.next_deadline(), Some(now + Duration::from_millis(100)));
    room.advance(now + Duration::from_millis(99));
    room.advance(now + Duration::from_millis(100));
    room.advance(now + Duration::from_millis(500));
    assert_eq!(room.next_deadline(), None);
}

#[test]
fn a_factory_that_panics_or_refuses_makes_no_room() {
    let panics: Box<RoomFactory> = Box::new(|_: &mut Ctx, _: &Value| panic!("bad options"));
    let refuses: Box<RoomFactory> =
        Box::new(|_: &mut Ctx, _: &Value| Err(Refusal::new("bad_options", "no")));
    let now = Instant::now();
    assert_eq!(
        LogicRoom::create("x", &*panics, &Value::Nil, now)
            .err()
            .unwrap()
            .code,
        "room_failed"
    );
    assert_eq!(
        LogicRoom::create("x", &*refuses, &Value::Nil, now)
            .err()
            .unwrap()
            .code,
        "bad_options"
    );
}
