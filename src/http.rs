//! HTTP routes: `GET /ws` upgrades to a session (or answers 503 over the connection cap),
//! `GET /health` reports the registry's live counts, `GET /rooms` lists public rooms as JSON,
//! and `/`, `/parlor.js` and the lobby's files are served from the binary.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix_http::ws::Codec;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, WebsocketContext};

use parlor_protocol::{RoomFilter, Value};

use crate::registry::actor::RegistryHandle;
use crate::registry::DEFAULT_LISTED_ROOMS;
use crate::session::outbox::{ConnectionSlot, CountedBody, OutboundBudget};
use crate::session::{Session, SessionSettings};

/// What every request handler shares.
pub struct AppState {
    pub registry: RegistryHandle,
    pub settings: Arc<SessionSettings>,
    pub live_connections: Arc<AtomicUsize>,
    pub max_connections: usize,
    pub outbound_budget_bytes: usize,
    pub max_listed_rooms: usize,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(upgrade))
        .route("/health", web::get().to(health))
        .route("/rooms", web::get().to(rooms));
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
    match state.registry.list_rooms(filter, limit).await {
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
            "limit" => {
                limit = raw
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max_listed_rooms).contains(n))
                    .ok_or_else(|| format!("limit is 1 to {max_listed_rooms}, not {raw:?}"))?
            }
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

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let Some(slot) = ConnectionSlot::try_acquire(&state.live_connections, state.max_connections)
    else {
        return Ok(HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "error": "too_many_connections",
            "max_connections": state.max_connections,
        })));
    };
    let mut response = ws::handshake(&req)?;
    let budget = Arc::new(OutboundBudget::new(state.outbound_budget_bytes));
    let session = Session::new(
        state.registry.clone(),
        Arc::clone(&budget),
        Arc::clone(&state.settings),
    );
    let codec = Codec::new().max_size(state.settings.max_frame_bytes);
    let body = WebsocketContext::with_codec(session, payload, codec);
    Ok(response.streaming(CountedBody::new(body, budget, slot)))
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.registry.stats().await {
        Some(stats) => HttpResponse::Ok().json(serde_json::json!({
            "status": "ok",
            "sessions": stats.sessions,
            "rooms": stats.rooms,
        })),
        None => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "registry_down"}))
        }
    }
}
