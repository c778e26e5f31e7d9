//! What every HTTP handler shares (`AppState`: the engine's handle, the node's settings, the
//! connection gates), and the small rules both the public routes (`http`) and the backend API
//! (`api`) apply. Both import this module; neither imports the other's internals.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::engine::RegistryHandle;
use crate::metrics::Metrics;
use crate::session::SessionContext;

/// New connections per client address. The limiter keeps one small entry per address it has
/// seen; past `CONNECTION_RATE_KEYS` entries it forgets the idle ones, at most once a second
/// (each sweep walks every entry).
pub struct ConnectionRate {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
    next_sweep: std::sync::Mutex<std::time::Instant>,
}

/// Addresses the connection-rate limiter remembers before it sweeps out the idle ones.
const CONNECTION_RATE_KEYS: usize = 4096;

impl ConnectionRate {
    pub fn new(quota: governor::Quota) -> Self {
        Self {
            limiter: governor::RateLimiter::keyed(quota),
            next_sweep: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    /// Takes one connection from `ip`'s bucket; false when it is empty.
    pub fn admit(&self, ip: IpAddr) -> bool {
        if self.limiter.len() > CONNECTION_RATE_KEYS {
            let now = std::time::Instant::now();
            // A poisoned lock only means another sweep panicked; sweeping again is safe.
            let mut next = self.next_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if now >= *next {
                *next = now + std::time::Duration::from_secs(1);
                drop(next);
                self.limiter.retain_recent();
            }
        }
        self.limiter.check_key(&ip).is_ok()
    }
}

/// What every request handler shares.
pub struct AppState {
    pub node: SessionContext,
    pub live_connections: Arc<AtomicUsize>,
    pub max_connections: usize,
    pub outbound_budget_bytes: usize,
    pub max_listed_rooms: usize,
    pub auth: Authenticator,
    pub connection_rate: Option<ConnectionRate>,
    /// The backend API's key; empty when the API is off.
    pub api_key: String,
}

impl AppState {
    pub fn registry(&self) -> &RegistryHandle {
        &self.node.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.node.metrics
    }
}

/// A listing's `limit` parameter: a whole number from 1, cut to `max_listed_rooms` as
/// `list_rooms` cuts it (a number too big for the machine included).
pub fn listing_limit(raw: &str, max_listed_rooms: usize) -> Result<usize, String> {
    let limit = match raw.parse::<usize>() {
        Ok(n) => n,
        Err(err) if *err.kind() == std::num::IntErrorKind::PosOverflow => usize::MAX,
        Err(_) => 0,
    };
    if limit == 0 {
        return Err(format!("limit is a whole number from 1, not {raw:?}"));
    }
    Ok(limit.min(max_listed_rooms))
}
