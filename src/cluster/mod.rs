//! The cluster: rooms that span several nodes, sharing one Redis (or Redis Cluster). Each room
//! has one home node at a time, which runs the room's rules — the same `Registry` a single
//! node runs — and holds a lease on it in Redis; what the home decides is committed to the
//! room's log and checkpoint in Redis (fenced by the lease) before anyone hears of it, and
//! the log carries the room's frames, with their offsets, to every node with members. A node
//! that dies loses its leases; another node takes its rooms over from their checkpoints.
//!
//! - `engine`: everything a node decides, with no I/O (edge, home, find).
//! - `store`: what the engine asks of Redis and what Redis answers, typed; `store.lua`: the
//!   Redis functions (leases, fencing, offsets, indexes: no room rule); `redis_store`: the
//!   translation between the two; `keys`: every key and channel, named once.
//! - `fanout`: which local session gets which frame, in order, with gaps filled (no I/O).
//! - `link`: the connections to Redis, reconnecting with backoff.
//! - `actor`: the thin actor that runs the engine.

mod actor;
mod engine;
mod fanout;
mod keys;
mod link;
mod redis_store;
#[cfg(any(test, feature = "script"))]
pub mod sim;
mod store;

pub use actor::{ClusterActor, ClusterSettings};
pub use keys::{Keys, RoomKeys};
pub use link::LinkConfig;

use std::sync::Arc;

use actix::{Actor, Arbiter, AsyncContext};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::engine::{RegistryHandle, MAILBOX_CAPACITY};
use crate::metrics::Metrics;

/// Starts a cluster node's actor on an arbiter of its own; requests waiting for it are bounded
/// by `queue_bytes`.
pub fn start(
    settings: ClusterSettings,
    queue_bytes: usize,
    metrics: Arc<Metrics>,
) -> RegistryHandle {
    let (inbox, queue) = RegistryHandle::inbox();
    let arbiter = Arbiter::new();
    let addr = ClusterActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.add_stream(UnboundedReceiverStream::new(queue));
        ClusterActor::new(settings, metrics)
    });
    RegistryHandle::for_engine(&addr, inbox, queue_bytes)
}

/// The Lua library every node loads into Redis.
pub const LIBRARY: &str = include_str!("store.lua");
