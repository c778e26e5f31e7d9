//! End-to-end tests: a real node on 127.0.0.1 (port 0) and real WebSocket clients.

mod api;
mod auth;
mod bad_input;
mod binary;
mod browser;
mod cleanup;
mod client;
mod common;
mod endpoints;
mod framing;
mod limits;
mod lobby;
mod metrics;
#[path = "../support/browser.rs"]
#[allow(dead_code)]
mod page;
mod rate;
mod resume;
mod rooms;
mod shutdown;
mod slow_consumer;
mod state;
mod subprotocol;
#[path = "../support/wait.rs"]
mod wait;
