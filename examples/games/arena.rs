//! A real-time arena: players steer with inputs the server checks, the server moves everyone
//! at 20 ticks a second, keeps players inside the walls and apart from each other, and scores
//! the coins they reach. Each tick the room hears the whole world (`world`); clients draw it
//! and interpolate between ticks. The arena gives snapshots, so on a cluster it goes on, on a
//! new home, when its home is lost.

use std::collections::BTreeMap;

use parlor::game::{Ctx, Input, Player, Refusal, Reply, RoomLogic, SessionId, Value};
use serde::{Deserialize, Serialize};

/// The arena's side, in world units.
pub const SIZE: f64 = 100.0;
/// A player's radius.
pub const RADIUS: f64 = 2.0;
/// How far a player moves in one tick at full input.
pub const SPEED: f64 = 1.0;
pub const TICK_RATE: u32 = 20;
pub const MAX_PLAYERS: usize = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Body {
    pub x: f64,
    pub y: f64,
    /// The last direction the player asked for (each within -1..=1).
    pub dir: (f64, f64),
    pub score: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Arena {
    pub players: BTreeMap<SessionId, Body>,
    pub coin: (f64, f64),
    seed: u64,
    pub tick: u64,
}

impl Arena {
    pub fn make(ctx: &mut Ctx, options: &Value) -> Result<Box<dyn RoomLogic>, Refusal> {
        let seed = options
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("seed")))
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(7);
        ctx.set_tick_rate(TICK_RATE);
        let mut arena = Arena {
            players: BTreeMap::new(),
            coin: (0.0, 0.0),
            seed,
            tick: 0,
        };
        arena.coin = arena.random_point();
        Ok(Box::new(arena))
    }

    /// A point inside the walls (a small LCG: the game needs no better).
    fn random_point(&mut self) -> (f64, f64) {
        let mut next = || {
            self.seed = self
                .seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let span = SIZE - 2.0 * RADIUS;
        (RADIUS + next() * span, RADIUS + next() * span)
    }

    /// One step of the world: directions from the inputs, moves, walls, collisions, coins.
    fn step(&mut self, inputs: Vec<Input>) {
        for input in inputs {
            if let (Some(body), Some(dir)) =
                (self.players.get_mut(&input.from), direction(&input.data))
            {
                body.dir = dir;
            }
        }
        for body in self.players.values_mut() {
            body.x = (body.x + body.dir.0 * SPEED).clamp(RADIUS, SIZE - RADIUS);
            body.y = (body.y + body.dir.1 * SPEED).clamp(RADIUS, SIZE - RADIUS);
        }
        // Players overlapping are pushed apart along the line between them; a wall that stops
        // one leaves the other to move the rest, and a few passes settle a crowd.
        let ids: Vec<SessionId> = self.players.keys().copied().collect();
        for _ in 0..4 {
            for (i, a) in ids.iter().enumerate() {
                for b in &ids[i + 1..] {
                    self.separate(*a, *b);
                }
            }
        }
        let coin = self.coin;
        let taker = self
            .players
            .iter()
            .find(|(_, b)| ((b.x - coin.0).powi(2) + (b.y - coin.1).powi(2)).sqrt() <= RADIUS + 1.0)
            .map(|(id, _)| *id);
        if let Some(id) = taker {
            if let Some(body) = self.players.get_mut(&id) {
                body.score += 1;
            }
            self.coin = self.random_point();
        }
        self.tick += 1;
    }

    /// Pushes `a` and `b` apart if they overlap: half each, then whatever a wall kept one
    /// from moving, the other.
    fn separate(&mut self, a: SessionId, b: SessionId) {
        let gap = |arena: &Arena| {
            let (pa, pb) = (&arena.players[&a], &arena.players[&b]);
            let (dx, dy) = (pb.x - pa.x, pb.y - pa.y);
            ((dx * dx + dy * dy).sqrt(), dx, dy)
        };
        let (distance, dx, dy) = gap(self);
        if distance >= 2.0 * RADIUS {
            return;
        }
        let (nx, ny) = if distance > 1e-9 {
            (dx / distance, dy / distance)
        } else {
            (1.0, 0.0)
        };
        let shove = |body: &mut Body, by: f64| {
            body.x = (body.x + nx * by).clamp(RADIUS, SIZE - RADIUS);
            body.y = (body.y + ny * by).clamp(RADIUS, SIZE - RADIUS);
        };
        let half = (2.0 * RADIUS - distance) / 2.0;
        shove(self.players.get_mut(&a).expect("a player"), -half);
        shove(self.players.get_mut(&b).expect("a player"), half);
        let (distance, _, _) = gap(self);
        if distance < 2.0 * RADIUS {
            let rest = 2.0 * RADIUS - distance;
            shove(self.players.get_mut(&b).expect("a player"), rest);
            let (distance, _, _) = gap(self);
            if distance < 2.0 * RADIUS {
                shove(
                    self.players.get_mut(&a).expect("a player"),
                    -(2.0 * RADIUS - distance),
                );
            }
        }
    }

    fn world(&self) -> Value {
        let players = self
            .players
            .iter()
            .map(|(id, b)| {
                Value::Array(vec![
                    Value::from(id.to_string()),
                    Value::from(b.x),
                    Value::from(b.y),
                    Value::from(b.score),
                ])
            })
            .collect();
        Value::Map(vec![
            (Value::from("tick"), Value::from(self.tick)),
            (Value::from("players"), Value::Array(players)),
            (
                Value::from("coin"),
                Value::Array(vec![Value::from(self.coin.0), Value::from(self.coin.1)]),
            ),
        ])
    }
}

/// An input's direction, if it is a valid one: a map with numbers `dx` and `dy`, each within
/// -1..=1 (a client that asks for more is cheating, or broken).
pub fn direction(data: &Value) -> Option<(f64, f64)> {
    let map = data.as_map()?;
    let get = |key: &str| {
        map.iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .and_then(|(_, v)| v.as_f64().or_else(|| v.as_i64().map(|n| n as f64)))
    };
    let (dx, dy) = (get("dx")?, get("dy")?);
    let valid = |d: f64| d.is_finite() && (-1.0..=1.0).contains(&d);
    (valid(dx) && valid(dy)).then_some((dx, dy))
}

impl RoomLogic for Arena {
    fn joining(&mut self, _: &mut Ctx, _: &Player) -> Result<(), Refusal> {
        if self.players.len() >= MAX_PLAYERS {
            return Err(Refusal::new(
                "arena_full",
                format!("{MAX_PLAYERS} play at once"),
            ));
        }
        Ok(())
    }

    fn joined(&mut self, _: &mut Ctx, player: &Player) {
        let (x, y) = self.random_point();
        self.players.insert(
            player.session,
            Body {
                x,
                y,
                dir: (0.0, 0.0),
                score: 0,
            },
        );
    }

    fn message(
        &mut self,
        _: &mut Ctx,
        from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        match event {
            "input" if direction(&data).is_some() => Ok(Reply::Input),
            "input" => Err(Refusal::new(
                "invalid_input",
                "an input is {dx, dy}, each from -1 to 1",
            )),
            "score" => Ok(Reply::Data(Value::from(
                self.players.get(&from).map_or(0, |b| b.score),
            ))),
            other => Err(Refusal::new("unknown_move", format!("no move {other:?}"))),
        }
    }

    fn tick(&mut self, ctx: &mut Ctx, inputs: Vec<Input>) {
        self.step(inputs);
        ctx.broadcast("world", self.world());
    }

    fn left(&mut self, _: &mut Ctx, who: SessionId, _: parlor::game::LeaveReason) {
        self.players.remove(&who);
    }

    /// The whole arena (a few dozen bytes a player): its new home goes on from here.
    fn snapshot(&self) -> Option<Value> {
        rmpv::ext::to_value(self).ok()
    }

    fn restore(&mut self, _: &mut Ctx, snapshot: Value) -> Result<(), Refusal> {
        *self = rmpv::ext::from_value(snapshot)
            .map_err(|err| Refusal::new("bad_snapshot", err.to_string()))?;
        Ok(())
    }
}
