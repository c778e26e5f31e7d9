//! HTTP routes: `GET /ws` upgrades to a session (or answers 503 over the connection cap) and
//! `GET /health` reports the registry's live counts.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix_http::ws::Codec;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, WebsocketContext};

use crate::registry::actor::RegistryHandle;
use crate::session::outbox::{ConnectionSlot, CountedBody, OutboundBudget};
use crate::session::{Session, SessionSettings};

/// What every request handler shares.
pub struct AppState {
    pub registry: RegistryHandle,
    pub settings: Arc<SessionSettings>,
    pub live_connections: Arc<AtomicUsize>,
    pub max_connections: usize,
    pub outbound_budget_bytes: usize,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(upgrade))
        .route("/health", web::get().to(health));
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
