//! A bot for the arena of `examples/games.rs`: joins (or makes) an arena room, steers toward
//! the coin it hears of in each `world` at the 20 Hz the server ticks, and says its score.
//!
//!     cargo run --example game_bot -- [--url ws://127.0.0.1:8081/ws] [--seconds 10]

use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use parlor_client::protocol::{RoomFilter, RoomOptions, Value};
use parlor_client::{Event, Parlor};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "ws://127.0.0.1:8081/ws")]
    url: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (parlor, mut events) = Parlor::connect(&args.url).await?;
    let me = parlor.session_id().to_string();
    let arena = RoomOptions {
        room_type: Some("arena".into()),
        ..RoomOptions::default()
    };
    let filter = RoomFilter {
        room_type: Some("arena".into()),
        ..RoomFilter::default()
    };
    let room = parlor.join_or_create(filter, arena).await?.room;
    println!("in arena {room} as {me}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    let mut worlds = 0u64;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        let Event::RoomEvent(world) = event else {
            continue;
        };
        if world.event != "world" {
            continue;
        }
        worlds += 1;
        let Some((dx, dy)) = toward_coin(&world.data, &me) else {
            continue;
        };
        let input = Value::Map(vec![
            (Value::from("dx"), Value::from(dx)),
            (Value::from("dy"), Value::from(dy)),
        ]);
        parlor.emit(&room, "input", &input).await?;
    }
    let score: Option<u64> = parlor.ask(&room, "score", &()).await?;
    println!("{worlds} ticks heard; score {}", score.unwrap_or(0));
    parlor.close().await;
    Ok(())
}

/// The direction from this bot to the coin, each part within -1..=1.
fn toward_coin(world: &Value, me: &str) -> Option<(f64, f64)> {
    let field = |name: &str| {
        world
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.clone())
    };
    let coin = field("coin")?;
    let coin = coin.as_array()?;
    let (cx, cy) = (coin.first()?.as_f64()?, coin.get(1)?.as_f64()?);
    let players = field("players")?;
    let mine = players
        .as_array()?
        .iter()
        .find(|p| p.as_array().and_then(|p| p.first()?.as_str()) == Some(me))?
        .as_array()?
        .clone();
    let (x, y) = (mine.get(1)?.as_f64()?, mine.get(2)?.as_f64()?);
    let (dx, dy) = (cx - x, cy - y);
    let length = (dx * dx + dy * dy).sqrt().max(1e-9);
    Some((dx / length, dy / length))
}
