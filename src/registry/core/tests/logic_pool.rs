//! Rooms' ticks run as jobs away from the registry (`with_logic_pool`): while a room's logic
//! is out, requests that need its answer wait, in each session's order, and what it must
//! hear waits in its slot; nothing is lost or reordered when it comes back.

use std::time::{Duration, Instant};

use parlor_protocol::RoomOptions;

use super::*;
use crate::game::{Ctx, Input, Refusal, Reply, RoomLogic, RoomTypes};

/// Keeps a log of what it heard; "log" answers it, anything else is an input.
struct Tally {
    heard: Vec<String>,
}

impl RoomLogic for Tally {
    fn joined(&mut self, _: &mut Ctx, _: &crate::game::Player) {
        self.heard.push("joined".into());
    }
    fn message(
        &mut self,
        _: &mut Ctx,
        _: SessionId,
        event: &str,
        _: Value,
    ) -> Result<Reply, Refusal> {
        match event {
            "log" => Ok(Reply::Data(Value::from(self.heard.join(",")))),
            _ => Ok(Reply::Input),
        }
    }
    fn tick(&mut self, ctx: &mut Ctx, inputs: Vec<Input>) {
        self.heard.push(format!("tick{}", inputs.len()));
        ctx.broadcast("tick", Value::from(inputs.len() as u64));
    }
    fn left(&mut self, _: &mut Ctx, _: SessionId, _: LeaveReason) {
        self.heard.push("left".into());
    }
}

fn pooled() -> Harness {
    let types = RoomTypes::new().add("tally", |ctx: &mut Ctx, _: &Value| {
        ctx.set_tick_rate(10);
        Ok(Box::new(Tally { heard: Vec::new() }) as _)
    });
    Harness {
        registry: Registry::new(RegistryLimits {
            max_room_name_bytes: 64,
            ..limits()
        })
        .with_room_types(types)
        .with_logic_pool(),
    }
}

fn ask(room: &str, event: &str, reference: u64) -> ClientFrame {
    ClientFrame::Emit {
        reference: Some(reference),
        room: room.into(),
        event: event.into(),
        data: Value::Nil,
        echo: false,
    }
}

/// The answers (`ok`, with their data) among `frames`, by ref.
fn answers(frames: &[ServerFrame]) -> Vec<(u64, Option<Value>)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Ok { reference, data } => Some((*reference, data.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn requests_wait_in_order_while_the_logic_ticks_elsewhere_and_go_on_when_it_is_back() {
    let mut h = pooled();
    let (a, out_a) = h.connect();
    let (b, out_b) = h.connect();
    h.run(
        a,
        ClientFrame::Create {
            reference: Some(1),
            room: Some("g".into()),
            options: RoomOptions {
                room_type: Some("tally".into()),
                ..RoomOptions::default()
            },
        },
    );
    h.join(a, "chat");
    h.join(b, "chat");
    out_a.take();
    out_b.take();
    // The tick is due: the logic goes out as a job, and the registry does not run it.
    let start = Instant::now();
    h.registry.advance(start + Duration::from_millis(150));
    let jobs = h.registry.take_logic_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        h.registry.next_logic_deadline(),
        None,
        "away logic has no deadline here"
    );
    // While it is out: a's input, a's question, and a's plain chat message after them wait;
    // b's chat message does not (b waits for nothing); b joins the game, and waits.
    h.run(a, ask("g", "move", 2));
    h.run(a, ask("g", "log", 3));
    h.run(a, emit("chat", false));
    h.run(b, ask("chat", "hello", 4));
    h.join(b, "g");
    assert!(answers(&out_a.take()).is_empty(), "a waits for the logic");
    let b_frames = out_b.take();
    assert_eq!(
        answers(&b_frames),
        vec![(4, None)],
        "b's chat is not held up"
    );
    // Back from the job (its tick ran with no input yet): the waiting requests go, in order.
    let Some(job) = jobs.into_iter().next() else {
        panic!("a job")
    };
    let done = job.run();
    h.registry.logic_done(done);
    h.check();
    let a_frames = out_a.take();
    assert_eq!(
        answers(&a_frames),
        vec![(2, None), (3, Some(Value::from("joined,tick0"))), (7, None)]
    );
    assert!(matches!(
        &out_b.take()[..],
        [.., ServerFrame::Ok { reference: 1, .. }]
    ));
    assert!(
        h.registry.rooms["g"].is_member(b),
        "b's join was carried out"
    );
    // Once home, requests are answered at once again.
    h.run(a, ask("g", "log", 5));
    assert_eq!(
        answers(&out_a.take()),
        vec![(5, Some(Value::from("joined,tick0,joined")))]
    );
}

#[test]
fn a_departure_while_the_logic_is_out_is_heard_after_its_tick_and_a_gone_room_drops_it() {
    let mut h = pooled();
    let (a, out_a) = h.connect();
    let (b, _) = h.connect();
    for (id, reference) in [(a, 1), (b, 2)] {
        h.run(
            id,
            ClientFrame::JoinOrCreate {
                reference: Some(reference),
                filter: RoomFilter {
                    room_type: Some("tally".into()),
                    ..RoomFilter::default()
                },
                options: RoomOptions {
                    room_type: Some("tally".into()),
                    ..RoomOptions::default()
                },
            },
        );
    }
    let Some(room) = h.registry.rooms.keys().next().cloned() else {
        panic!("a room")
    };
    assert_eq!(h.registry.rooms[&room].members.len(), 2);
    h.registry
        .advance(Instant::now() + Duration::from_millis(150));
    let Some(job) = h.registry.take_logic_jobs().pop() else {
        panic!("a job")
    };
    h.run(
        b,
        ClientFrame::Leave {
            reference: None,
            room: room.clone(),
        },
    );
    h.registry.logic_done(job.run());
    out_a.take();
    h.run(a, ask(&room, "log", 9));
    assert_eq!(
        answers(&out_a.take()),
        vec![(9, Some(Value::from("joined,joined,tick0,left")))]
    );
    // A room that went while its logic was out does not take it back.
    h.registry
        .advance(Instant::now() + Duration::from_millis(400));
    let Some(job) = h.registry.take_logic_jobs().pop() else {
        panic!("a job")
    };
    h.run(
        a,
        ClientFrame::Leave {
            reference: None,
            room: room.clone(),
        },
    );
    assert!(!h.registry.rooms.contains_key(&room));
    h.registry.logic_done(job.run());
    h.check();
    assert!(!h.registry.rooms.contains_key(&room));
}
