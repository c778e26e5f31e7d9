//! Cluster tests: a real `redis-server` on a random port and three Parlor nodes, each its own
//! process (the `parlor` binary), sharing rooms through it.

mod backend;
#[path = "../support/editor.rs"]
mod editor;
mod failover;
mod faults;
mod game;
mod harness;
mod ops;
mod proxy;
mod rooms;
mod state;
#[path = "../support/wait.rs"]
mod wait;
