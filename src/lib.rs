//! Parlor: a multiplayer WebSocket session server. Sessions (one actix actor per connection)
//! decode MessagePack frames and send typed messages to the room registry, which owns rooms
//! and membership. See ARCHITECTURE.md for the map.

pub mod api;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod document;
pub mod engine;
pub mod game;
pub mod http;
pub mod json;
pub mod metrics;
pub mod outbox;
pub mod registry;
pub mod secret;
pub mod server;
pub mod session;

pub use config::Config;
pub use server::{bind, spawn, BackgroundNode, NodeBuilder};

/// The README's examples (a client, a game room), compiled as doctests so that they cannot
/// drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
