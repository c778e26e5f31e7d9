//! A turn-based card game for two to four: each player is dealt a hidden hand (sent to it
//! alone); in turn, a player plays one card of its own hand; a turn not played in time passes;
//! when every hand is empty, the highest total wins and the room ends.

use std::time::Duration;

use parlor::game::{Ctx, LeaveReason, Player, Refusal, Reply, RoomLogic, SessionId, Value};

pub const HAND: usize = 5;
pub const MAX_PLAYERS: usize = 4;
pub const TURN_TIME: Duration = Duration::from_secs(15);

pub struct Cards {
    deck: Vec<u64>,
    /// In turn order: each player and its hand.
    pub hands: Vec<(SessionId, Vec<u64>)>,
    pub totals: Vec<u64>,
    pub turn: usize,
    started: bool,
}

impl Cards {
    /// `type_options`: `{"players": n}` (2 to 4, default 2): the game starts when they are in.
    pub fn make(_: &mut Ctx, options: &Value) -> Result<Box<dyn RoomLogic>, Refusal> {
        let seed = options
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("seed")))
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(11);
        // A shuffled deck of 1..=52 (Fisher-Yates on a small LCG).
        let mut deck: Vec<u64> = (1..=52).collect();
        let mut state = seed;
        for i in (1..deck.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (state >> 33) as usize % (i + 1);
            deck.swap(i, j);
        }
        Ok(Box::new(Cards {
            deck,
            hands: Vec::new(),
            totals: Vec::new(),
            turn: 0,
            started: false,
        }))
    }

    fn whose_turn(&self) -> Option<SessionId> {
        self.hands.get(self.turn).map(|(id, _)| *id)
    }

    fn next_turn(&mut self, ctx: &mut Ctx) {
        if self.hands.iter().all(|(_, hand)| hand.is_empty()) {
            let best = self.totals.iter().copied().max().unwrap_or(0);
            let winners: Vec<Value> = self
                .hands
                .iter()
                .zip(&self.totals)
                .filter(|(_, total)| **total == best)
                .map(|((id, _), _)| Value::from(id.to_string()))
                .collect();
            ctx.broadcast("game_over", Value::Array(winners));
            ctx.end("the game is over");
            return;
        }
        loop {
            self.turn = (self.turn + 1) % self.hands.len();
            if !self.hands[self.turn].1.is_empty() {
                break;
            }
        }
        let next = self
            .whose_turn()
            .map(|id| id.to_string())
            .unwrap_or_default();
        ctx.set_state(&["turn"], next);
        ctx.set_timer("turn", TURN_TIME);
    }
}

impl RoomLogic for Cards {
    fn joining(&mut self, _: &mut Ctx, _: &Player) -> Result<(), Refusal> {
        if self.started || self.hands.len() >= MAX_PLAYERS {
            return Err(Refusal::new(
                "table_full",
                "the game has started or the table is full",
            ));
        }
        Ok(())
    }

    fn joined(&mut self, ctx: &mut Ctx, player: &Player) {
        let hand: Vec<u64> = self.deck.split_off(self.deck.len() - HAND);
        ctx.send(
            player.session,
            "hand",
            Value::Array(hand.iter().map(|c| Value::from(*c)).collect()),
        );
        self.hands.push((player.session, hand));
        self.totals.push(0);
        ctx.set_state(&["players"], self.hands.len() as u64);
    }

    fn message(
        &mut self,
        ctx: &mut Ctx,
        from: SessionId,
        event: &str,
        data: Value,
    ) -> Result<Reply, Refusal> {
        match event {
            "start" if !self.started && self.hands.len() >= 2 => {
                self.started = true;
                self.turn = self.hands.len() - 1;
                self.next_turn(ctx);
                Ok(Reply::Ok)
            }
            "start" => Err(Refusal::new("cannot_start", "two players, once")),
            "play" => {
                if !self.started || self.whose_turn() != Some(from) {
                    return Err(Refusal::new("not_your_turn", "wait for your turn"));
                }
                let card = data.as_u64().unwrap_or(0);
                let hand = &mut self.hands[self.turn].1;
                let Some(at) = hand.iter().position(|c| *c == card) else {
                    return Err(Refusal::new("not_in_hand", "that card is not in your hand"));
                };
                hand.remove(at);
                self.totals[self.turn] += card;
                ctx.broadcast(
                    "played",
                    Value::Array(vec![Value::from(from.to_string()), Value::from(card)]),
                );
                ctx.cancel_timer("turn");
                self.next_turn(ctx);
                Ok(Reply::Ok)
            }
            "hand" => Ok(Reply::Data(Value::Array(
                self.hands
                    .iter()
                    .find(|(id, _)| *id == from)
                    .map(|(_, hand)| hand.iter().map(|c| Value::from(*c)).collect())
                    .unwrap_or_default(),
            ))),
            other => Err(Refusal::new("unknown_move", format!("no move {other:?}"))),
        }
    }

    fn timer(&mut self, ctx: &mut Ctx, name: &str) {
        if name == "turn" {
            // The player's lowest card is played for it.
            if let Some((id, hand)) = self.hands.get_mut(self.turn) {
                if let Some(at) = (0..hand.len()).min_by_key(|i| hand[*i]) {
                    let card = hand.remove(at);
                    self.totals[self.turn] += card;
                    let id = *id;
                    ctx.broadcast(
                        "timed_out",
                        Value::Array(vec![Value::from(id.to_string()), Value::from(card)]),
                    );
                }
            }
            self.next_turn(ctx);
        }
    }

    fn left(&mut self, ctx: &mut Ctx, _: SessionId, _: LeaveReason) {
        if self.started {
            ctx.end("a player left the table");
        }
    }
}
