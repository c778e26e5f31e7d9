//! The backend API, for the game's or editor's own servers: publish an event into a room, read
//! a room (members, state, metadata), list every room, disconnect a session. Every route needs
//! `Authorization: Bearer <api.key>`; with no key configured the routes answer 404. Bodies are
//! JSON, or MessagePack with `Content-Type: application/msgpack`; answers are JSON, or
//! MessagePack when `Accept` names it.
//!
//! - `POST   /api/rooms/{room}/events`  `{event, data}` → `{offset}`
//! - `GET    /api/rooms?limit=N`        → `{rooms: [Listing...]}` (room info and `private`), at
//!   most max_listed_rooms
//! - `GET    /api/rooms/{room}`         → `RoomDetail`: room info (count as `member_count`),
//!   `private`, `members` (list), state, version, epoch, offset
//! - `DELETE /api/sessions/{session}`   → 204

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use parlor_protocol::{decode_value, encode_value, map_only, SessionId, Value};

use crate::app::{listing_limit, AppState};
use crate::auth::bearer_token;
use crate::engine::Publish;
use crate::json::json_response;
use crate::registry::Listing;
use crate::secret::same_secret;

const MSGPACK_TYPES: &[&str] = &[
    "application/msgpack",
    "application/x-msgpack",
    "application/vnd.msgpack",
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/rooms", web::get().to(list_rooms))
            .route("/rooms/{room}", web::get().to(read_room))
            .route("/rooms/{room}/events", web::post().to(publish))
            .route("/sessions/{session}", web::delete().to(disconnect)),
    );
}

/// Why an API request failed, and its status.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("the backend API is not enabled (api.key is empty)")]
    Disabled,
    #[error("a valid API key is required as Authorization: Bearer <key>")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the body is over limits.max_frame_bytes ({max} bytes)")]
    PayloadTooLarge { max: usize },
    #[error("the room registry cannot answer now (stopped, or cut off from Redis)")]
    Unavailable,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Disabled => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "api_disabled",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// Checks the API key, then answers with `handler`'s result in the format the client accepts.
async fn answer<T: Serialize>(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    handler: impl std::future::Future<Output = Result<Option<T>, ApiError>>,
) -> HttpResponse {
    let result = match authorize(req, state) {
        Ok(()) => handler.await,
        Err(err) => Err(err),
    };
    match result {
        Ok(Some(body)) => respond(req, status, &body),
        Ok(None) => HttpResponse::build(status).finish(),
        Err(err) => {
            let mut response = respond(
                req,
                err.status(),
                &ErrorBody {
                    error: err.code(),
                    message: err.to_string(),
                },
            );
            if matches!(err, ApiError::Unauthorized) {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if state.api_key.is_empty() {
        return Err(ApiError::Disabled);
    }
    let given = bearer_token(req).unwrap_or_default();
    if same_secret(given, &state.api_key) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn wants_msgpack(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| MSGPACK_TYPES.iter().any(|t| accept.contains(t)))
}

fn respond<T: Serialize>(req: &HttpRequest, status: StatusCode, body: &T) -> HttpResponse {
    if wants_msgpack(req) {
        HttpResponse::build(status)
            .content_type("application/msgpack")
            .body(encode_value(body))
    } else {
        json_response(status, body)
    }
}

/// Reads a JSON or MessagePack body, by its Content-Type.
fn read_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    max_depth: usize,
) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if MSGPACK_TYPES.iter().any(|t| content_type.starts_with(t)) {
        decode_value(body, max_depth).map_err(|err| ApiError::BadRequest(err.message))
    } else if json_nests_deeper_than(body, max_depth) {
        // The words of the MessagePack decoder's refusal, so both formats answer alike.
        Err(ApiError::BadRequest(format!(
            "arrays and maps nest deeper than {max_depth}"
        )))
    } else {
        serde_json::from_slice(body).map_err(|err| ApiError::BadRequest(err.to_string()))
    }
}

/// `{event, data}`, as a map only: serde would also read the fields from a positional array
/// (`["deal", 1]`), in JSON as in MessagePack, and the API, like the protocol, names them.
#[derive(Deserialize)]
#[serde(transparent)]
struct PublishBody(#[serde(deserialize_with = "map_only::deserialize")] PublishFields);

/// Whether the arrays and objects of the JSON text `bytes` nest deeper than `max_depth`, the
/// outermost counting as 1 (as a MessagePack body's own map does). serde_json's own bound is a
/// fixed 128, so the text is scanned first: brackets count outside strings only, and inside a
/// string a backslash escapes the next byte. Bytes of multi-byte UTF-8 characters are all
/// above 0x7f, so they are never taken for a bracket or a quote. Malformed text is left for
/// serde_json to refuse.
fn json_nests_deeper_than(bytes: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFields {
    event: String,
    #[serde(default = "nil")]
    data: Value,
}

fn nil() -> Value {
    Value::Nil
}

#[derive(Serialize)]
struct Published {
    offset: u64,
}

/// Reads the body, at most `max` bytes of it. The handler reads it itself, after the key is
/// checked: a `web::Bytes` argument would be read before, and held to actix-web's own limit
/// (256 KiB) rather than to `max`, answered in actix's words.
async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge { max });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| ApiError::BadRequest(err.to_string()))?;
        if body.len() + chunk.len() > max {
            return Err(ApiError::PayloadTooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn publish(
    req: HttpRequest,
    room: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let handler = async {
        let settings = &state.node.settings;
        let body = read_limited(&req, payload, settings.max_frame_bytes).await?;
        let PublishBody(PublishFields { event, data }) =
            read_body(&req, &body, settings.max_depth)?;
        let max_event = settings.limits.max_event_name_bytes as usize;
        if event.is_empty() || event.len() > max_event {
            return Err(ApiError::BadRequest(format!(
                "event names are 1 to {max_event} bytes long"
            )));
        }
        let room = room.into_inner();
        let published = state
            .registry()
            .publish(Publish {
                room: room.clone(),
                event,
                data,
            })
            .await
            .ok_or(ApiError::Unavailable)?;
        match published {
            Some(offset) => Ok(Some(Published { offset })),
            None => Err(ApiError::NotFound(format!("no room {room:?}"))),
        }
    };
    answer(&req, &state, StatusCode::OK, handler).await
}

async fn read_room(
    req: HttpRequest,
    room: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let handler = async {
        let room = room.into_inner();
        match state.registry().read_room(room.clone()).await {
            Some(Some(detail)) => Ok(Some(detail)),
            Some(None) => Err(ApiError::NotFound(format!("no room {room:?}"))),
            None => Err(ApiError::Unavailable),
        }
    };
    answer(&req, &state, StatusCode::OK, handler).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
}

/// `{"rooms": [...]}`: each room's info and whether it is private.
#[derive(Serialize)]
struct RoomList {
    rooms: Vec<Listing>,
}

async fn list_rooms(
    req: HttpRequest,
    query: Result<web::Query<ListQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let handler = async {
        let max = state.max_listed_rooms;
        let query = query.map_err(|err| ApiError::BadRequest(err.to_string()))?;
        let limit = match &query.limit {
            Some(raw) => listing_limit(raw, max).map_err(ApiError::BadRequest)?,
            None => max,
        };
        let rooms = state
            .registry()
            .all_rooms(limit)
            .await
            .ok_or(ApiError::Unavailable)?;
        Ok(Some(RoomList { rooms }))
    };
    answer(&req, &state, StatusCode::OK, handler).await
}

async fn disconnect(
    req: HttpRequest,
    session: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let handler = async {
        let raw = session.into_inner();
        let id: SessionId = raw
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("{raw:?} is not a session id")))?;
        match state.registry().kick_session(id).await {
            Some(true) => Ok(None::<()>),
            Some(false) => Err(ApiError::NotFound(format!("no session {id}"))),
            None => Err(ApiError::Unavailable),
        }
    };
    answer(&req, &state, StatusCode::NO_CONTENT, handler).await
}

#[cfg(test)]
mod tests {
    use super::json_nests_deeper_than;

    #[test]
    fn json_depth_counts_brackets_outside_strings_only() {
        assert!(!json_nests_deeper_than(b"{}", 1));
        assert!(json_nests_deeper_than(b"{\"a\":[]}", 1));
        assert!(!json_nests_deeper_than(b"{\"a\":[]}", 2));
        assert!(!json_nests_deeper_than(b"[1,[2],[3],{\"b\":4}]", 2));
        // Brackets in strings, escaped quotes and an escaped backslash before the closing quote.
        assert!(!json_nests_deeper_than(br#"{"a":"[[[{\"[["}"#, 1));
        assert!(json_nests_deeper_than(br#"{"a":"\\",  "b":[]}"#, 1));
        assert!(!json_nests_deeper_than("{\"é\":\"ü[\"}".as_bytes(), 1));
        assert!(json_nests_deeper_than("[".repeat(33).as_bytes(), 32));
        assert!(!json_nests_deeper_than("[".repeat(32).as_bytes(), 32));
    }
}
