//! Two games on Parlor as a library: a real-time arena (`arena`) and a turn-based card game
//! with hidden hands (`cards`), served by one node with a browser page each.
//!
//!     cargo run --release --example games -- 127.0.0.1:8081
//!
//! Then open http://127.0.0.1:8081/arena and http://127.0.0.1:8081/cards (`?room=name` picks
//! a table) in two windows. Clients make a room with `create` (or `join_or_create`) and
//! `options.room_type` set to `arena` or `cards`; `examples/game_bot.rs` plays the arena.

#[path = "games/arena.rs"]
mod arena;
#[path = "games/cards.rs"]
mod cards;
#[path = "games/node.rs"]
mod node;

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // The embedded defaults, ./config.toml if there is one, and PARLOR_* variables.
    let mut config = parlor::Config::load(None, std::env::vars()).map_err(std::io::Error::other)?;
    if let Some(bind) = std::env::args().nth(1) {
        config.server.bind = bind.parse().map_err(std::io::Error::other)?;
    }
    let node = node::builder(config).spawn()?;
    println!(
        "games on http://{0}/arena and http://{0}/cards (ws://{0}/ws, room types arena, cards)",
        node.addr
    );
    loop {
        std::thread::park();
    }
}
