//! The cluster: rooms that span several nodes, kept in Redis. A node with `[cluster]
//! redis_url` set runs `ClusterActor` instead of the single-node registry actor. Redis holds
//! every room (members, owner, seats, lock, metadata, state and its version, and a stream of
//! its recent frames) and is the one place a room's frames are ordered: the functions in
//! `parlor.lua` check and change a room atomically and publish what they append. Each node
//! subscribes to the rooms it has members in and hands their frames to them.
//!
//! - `parlor.lua`: the Redis functions; the data model is described at its top.
//! - `wire`: payloads and answers, parsed (no I/O).
//! - `fanout`: which local session gets which frame, in order, with gaps filled (no I/O).
//! - `link`: the two Redis connections, reconnecting with backoff.
//! - `node`: the actor.

mod fanout;
mod link;
mod node;
mod wire;

pub use link::LinkConfig;
pub use node::{ClusterActor, ClusterSettings};

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
pub const LIBRARY: &str = include_str!("parlor.lua");
