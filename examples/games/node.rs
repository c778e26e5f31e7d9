//! The games node: both room types and their pages, on Parlor as a library. Used by the
//! `games` example and by the tests that play its pages in a browser.

use crate::{arena, cards};

const HTML: &str = "text/html; charset=utf-8";

/// A node builder with the arena and the card game, and their pages at `/arena` and `/cards`.
pub fn builder(config: parlor::Config) -> parlor::NodeBuilder {
    parlor::NodeBuilder::new(config)
        .room_type("arena", arena::Arena::make)
        .room_type("cards", cards::Cards::make)
        .page("/arena", HTML, include_str!("web/arena.html"))
        .page("/cards", HTML, include_str!("web/cards.html"))
}
