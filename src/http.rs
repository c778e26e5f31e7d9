//! HTTP routes: `GET /ws` upgrades to a session (429 over the per-IP connection rate, 401/403
//! without a valid token or from a disallowed origin, 503 over the connection cap, 400 for an
//! offer of subprotocols without `parlor`),
//! `GET /health` reports the registry's live counts, `GET /ready` whether to send it clients, `GET /metrics` the Prometheus metrics,
//! `GET /rooms` lists public rooms as JSON, `/api/...` is the backend API (see `api`), and
//! `/`, `/parlor.js` and the lobby's files are served from the binary.

use std::collections::HashMap;
use std::sync::Arc;

use actix_http::ws::Codec;
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, WebsocketContext};

use parlor_protocol::{RoomFilter, RoomInfo, Value};

use crate::app::{listing_limit, AppState};
use crate::auth::{offered_subprotocols, SUBPROTOCOL};
use crate::json::{error_body, error_response, json_response};
use crate::metrics::Limit;
use crate::outbox::{ConnectionSlot, CountedBody, OutboundBudget};
use crate::registry::DEFAULT_LISTED_ROOMS;
use crate::session::reader::SocketReader;
use crate::session::Session;

/// The node's routes, and `pages` (a game's own, say) beside the lobby's.
pub fn routes(cfg: &mut web::ServiceConfig, pages: &[Page]) {
    cfg.route("/ws", web::get().to(upgrade))
        .route("/yjs/{document}", web::get().to(upgrade_document))
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/rooms", web::get().to(rooms))
        .configure(crate::api::routes);
    for asset in ASSETS.iter().chain(pages).copied() {
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

/// A file a node serves on GET, compiled into the program: the browser lobby's, or a game's
/// page given to `NodeBuilder::page`.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const ASSETS: &[Page] = &[
    Page {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/index.html"),
    },
    Page {
        path: "/lobby.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/lobby.js"),
    },
    Page {
        path: "/lobby.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/lobby.css"),
    },
    Page {
        path: "/editor",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/editor.html"),
    },
    Page {
        // Built by web/editor/build.mjs from pinned npm packages (CodeMirror, Yjs...).
        path: "/editor.bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/editor.bundle.js"),
    },
    Page {
        path: "/parlor.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/parlor.js"),
    },
];

/// 503 `unavailable`: the registry has stopped, or a cluster node cannot ask Redis.
fn unavailable() -> HttpResponse {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the room registry cannot answer now (stopped, or cut off from Redis)".into(),
    )
}

/// Gives the error answers that actix-web writes itself (an unknown path, a wrong method, a
/// request that is no WebSocket handshake on `/ws`) the common JSON body, so that a client
/// reads every error alike. The code is the status's reason phrase in snake case
/// (`not_found`, `method_not_allowed`, `bad_request`, `upgrade_required`); the message is
/// actix's, or the phrase. Answers that already carry JSON or MessagePack are the handlers'
/// own and pass unchanged.
pub fn uniform_error<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let written_by_us = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("application/msgpack"));
    if written_by_us {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = res
        .response()
        .error()
        .map(ToString::to_string)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| reason.to_owned());
    let code: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let (req, old) = res.into_parts();
    let mut new = error_response(status, &code, message);
    // Keep what the answer says besides its body (Allow on a 405, Upgrade on a 426).
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_into_right_body(),
    ))
}

/// `GET /rooms?mode=M&free_seats=true&limit=N&meta.KEY=VALUE`: the public rooms matching the
/// filter, as `list_rooms` gives them. A `meta.` value is read as JSON when it parses as JSON
/// (`3`, `true`, `"3"`) and as a plain string otherwise.
async fn rooms(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (filter, limit) = match parse_room_query(&query, state.max_listed_rooms) {
        Ok(parsed) => parsed,
        Err(why) => return error_response(StatusCode::BAD_REQUEST, "bad_query", why),
    };
    match state.registry().list_rooms(filter, limit).await {
        Some(rooms) => json_response(StatusCode::OK, &RoomList { rooms }),
        None => unavailable(),
    }
}

/// `{"rooms": [room info...]}`, the answer of `GET /rooms`.
#[derive(serde::Serialize)]
struct RoomList {
    rooms: Vec<RoomInfo>,
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

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    upgrade_as(req, payload, state, None).await
}

/// `GET /yjs/{document}`: a y-websocket connection to the document room `document`
/// (`session::ywebsocket`), with the same checks as `/ws`.
async fn upgrade_document(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    document: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    upgrade_as(req, payload, state, Some(document.into_inner())).await
}

async fn upgrade_as(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    document: Option<String>,
) -> actix_web::Result<HttpResponse> {
    if let (Some(limiter), Some(peer)) = (&state.connection_rate, req.peer_addr()) {
        if !limiter.admit(peer.ip()) {
            state.metrics().rate_limited(Limit::Connections);
            return Ok(error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many new connections from this address".into(),
            ));
        }
    }
    let identity = match state.auth.admit(&req) {
        Ok(identity) => identity,
        Err(err) => {
            state.metrics().auth_failures.inc();
            let status = match err {
                crate::auth::AuthError::Origin(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut response = error_response(status, err.code(), err.to_string());
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            return Ok(response);
        }
    };
    let Some(slot) = ConnectionSlot::try_acquire(&state.live_connections, state.max_connections)
    else {
        let mut body = error_body(
            "too_many_connections",
            format!(
                "this node holds its limit of {} connections",
                state.max_connections
            ),
        );
        body["max_connections"] = state.max_connections.into();
        return Ok(HttpResponse::ServiceUnavailable().json(body));
    };
    let mut response = ws::handshake(&req)?;
    // actix-web-actors would read only the first header line for `parlor`, and accept an
    // offer without it by selecting nothing, which a browser then fails after the session
    // was made. Every line counts, and such an offer is refused here, before any session.
    let mut offered = offered_subprotocols(&req).peekable();
    if offered.peek().is_some() {
        if !offered.any(|p| p == SUBPROTOCOL) {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "subprotocol_required",
                format!("the offered subprotocols must include {SUBPROTOCOL:?}"),
            ));
        }
        response.insert_header((header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL));
    }
    let budget = Arc::new(OutboundBudget::new(state.outbound_budget_bytes));
    let max_frame_bytes = state.node.settings.max_frame_bytes;
    let input = SocketReader::new(payload, max_frame_bytes, state.registry().gate());
    let mut session = Session::new(
        &state.node,
        Arc::clone(&budget),
        identity.user,
        identity.rooms,
        input,
    );
    if let Some(document) = document {
        session = session.for_document(document);
    }
    // The session reads its input itself (`SocketReader`, bounded as actix's reader is not);
    // the context gets an input that never yields and only writes.
    let no_input =
        futures_util::stream::pending::<Result<bytes::Bytes, actix_web::error::PayloadError>>();
    let codec = Codec::new().max_size(max_frame_bytes);
    let body = WebsocketContext::with_codec(session, no_input, codec);
    Ok(response.streaming(CountedBody::new(body, budget, slot)))
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.registry().stats().await {
        Some(stats) => {
            let degraded = stats.cluster.as_ref().is_some_and(|c| !c.up);
            let body = Health {
                status: if degraded { "degraded" } else { "ok" },
                sessions: stats.sessions,
                away: stats.away,
                rooms: stats.rooms,
                store: stats
                    .store_failing
                    .map(|failing| if failing { "failing" } else { "ok" }),
                cluster: stats.cluster.map(|c| ClusterStatus {
                    node: c.node,
                    redis: if c.up { "up" } else { "down" },
                }),
            };
            json_response(StatusCode::OK, &body)
        }
        None => unavailable(),
    }
}

/// The body of `GET /health`.
#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    sessions: usize,
    away: usize,
    rooms: usize,
    /// Cluster nodes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterStatus>,
    /// A single node with a store (`store.dir`): "ok", or "failing" while writes fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct ClusterStatus {
    node: String,
    redis: &'static str,
}

/// `GET /ready`, for load balancers: 200 while the node can serve new sessions; 503 once it
/// shuts down (`shutting_down`), while a cluster node cannot reach Redis (`degraded`), or
/// when the registry does not answer (`unavailable`). `/health` stays 200 in the first two:
/// the node is alive, it only should not get new clients.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let registry = state.registry();
    if registry.is_closing() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is shutting down".into(),
        );
    }
    match registry.stats().await {
        None => unavailable(),
        Some(stats) if stats.cluster.as_ref().is_some_and(|c| !c.up) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            "the node cannot reach Redis".into(),
        ),
        Some(_) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
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
