//! HTTP routes: `GET /ws` upgrades to a session (429 over the per-IP connection rate, 401/403
//! without a valid token or from a disallowed origin, 503 over the connection cap),
//! `GET /health` reports the registry's live counts, `GET /metrics` the Prometheus metrics,
//! `GET /rooms` lists public rooms as JSON, `/api/...` is the backend API (see `api`), and
//! `/`, `/parlor.js` and the lobby's files are served from the binary.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix_http::ws::Codec;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, WebsocketContext};

use parlor_protocol::{RoomFilter, Value};

use crate::auth::{Authenticator, SUBPROTOCOL};
use crate::metrics::{Limit, Metrics};
use crate::registry::actor::RegistryHandle;
use crate::registry::DEFAULT_LISTED_ROOMS;
use crate::session::outbox::{ConnectionSlot, CountedBody, OutboundBudget};
use crate::session::{Session, SessionContext};

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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(upgrade))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/rooms", web::get().to(rooms))
        .configure(crate::api::routes);
    for asset in ASSETS {
        cfg.route(
            asset.path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(asset.content_type)
                    .insert_header(("Cache-Control", "no-cache"))
                    .body(asset.body)
            }),
        );
    }
}

/// A file of the browser lobby, compiled into the binary.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "/lobby.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/lobby.js"),
    },
    Asset {
        path: "/lobby.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/lobby.css"),
    },
    Asset {
        path: "/parlor.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/parlor.js"),
    },
];

/// `GET /rooms?mode=M&free_seats=true&limit=N&meta.KEY=VALUE`: the public rooms matching the
/// filter, as `list_rooms` gives them. A `meta.` value is read as JSON when it parses as JSON
/// (`3`, `true`, `"3"`) and as a plain string otherwise.
async fn rooms(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (filter, limit) = match parse_room_query(&query, state.max_listed_rooms) {
        Ok(parsed) => parsed,
        Err(why) => {
            return HttpResponse::BadRequest()
                .json(serde_json::json!({"error": "bad_query", "message": why}))
        }
    };
    match state.registry().list_rooms(filter, limit).await {
        Some(rooms) => HttpResponse::Ok().json(serde_json::json!({ "rooms": rooms })),
        None => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "registry_down"}))
        }
    }
}

fn parse_room_query(
    query: &HashMap<String, String>,
    max_listed_rooms: usize,
) -> Result<(RoomFilter, usize), String> {
    let mut filter = RoomFilter::default();
    let mut limit = DEFAULT_LISTED_ROOMS.min(max_listed_rooms);
    for (key, raw) in query {
        match key.as_str() {
            "mode" => filter.mode = Some(raw.clone()),
            "free_seats" => {
                filter.free_seats = raw
                    .parse()
                    .map_err(|_| format!("free_seats is true or false, not {raw:?}"))?
            }
            "limit" => limit = listing_limit(raw, max_listed_rooms)?,
            other => match other.strip_prefix("meta.") {
                Some(name) => {
                    let value = serde_json::from_str::<serde_json::Value>(raw)
                        .ok()
                        .and_then(|json| rmpv::ext::to_value(json).ok())
                        .unwrap_or_else(|| Value::from(raw.as_str()));
                    filter.metadata.insert(name.to_owned(), value);
                }
                None => return Err(format!("unknown parameter {other:?}")),
            },
        }
    }
    Ok((filter, limit))
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

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    if let (Some(limiter), Some(peer)) = (&state.connection_rate, req.peer_addr()) {
        if !limiter.admit(peer.ip()) {
            state.metrics().rate_limited(Limit::Connections);
            return Ok(HttpResponse::TooManyRequests().json(serde_json::json!({
                "error": "rate_limited",
                "message": "too many new connections from this address",
            })));
        }
    }
    let identity = match state.auth.admit(&req) {
        Ok(identity) => identity,
        Err(err) => {
            state.metrics().auth_failures.inc();
            let body = serde_json::json!({"error": err.code(), "message": err.to_string()});
            return Ok(match err {
                crate::auth::AuthError::Origin(_) => HttpResponse::Forbidden().json(body),
                _ => HttpResponse::Unauthorized()
                    .insert_header(("WWW-Authenticate", "Bearer"))
                    .json(body),
            });
        }
    };
    let Some(slot) = ConnectionSlot::try_acquire(&state.live_connections, state.max_connections)
    else {
        return Ok(HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "error": "too_many_connections",
            "max_connections": state.max_connections,
        })));
    };
    let mut response = ws::handshake_with_protocols(&req, &[SUBPROTOCOL])?;
    let budget = Arc::new(OutboundBudget::new(state.outbound_budget_bytes));
    let session = Session::new(
        &state.node,
        Arc::clone(&budget),
        identity.user,
        identity.rooms,
    );
    let codec = Codec::new().max_size(state.node.settings.max_frame_bytes);
    let body = WebsocketContext::with_codec(session, payload, codec);
    Ok(response.streaming(CountedBody::new(body, budget, slot)))
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.registry().stats().await {
        Some(stats) => {
            let degraded = stats.cluster.as_ref().is_some_and(|c| !c.up);
            let mut body = serde_json::json!({
                "status": if degraded { "degraded" } else { "ok" },
                "sessions": stats.sessions,
                "away": stats.away,
                "rooms": stats.rooms,
            });
            if let Some(cluster) = &stats.cluster {
                body["cluster"] = serde_json::json!({
                    "node": cluster.node,
                    "redis": if cluster.up { "up" } else { "down" },
                });
            }
            HttpResponse::Ok().json(body)
        }
        None => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "registry_down"}))
        }
    }
}

/// `GET /metrics`: the live counts are read from the registry now, the counters as they are.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = state.metrics();
    if let Some(stats) = state.registry().stats().await {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.sessions.set(gauge(stats.sessions));
        metrics.sessions_away.set(gauge(stats.away));
        metrics.rooms.set(gauge(stats.rooms));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
