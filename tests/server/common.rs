//! Shared helpers: a node with short timers, clients, `/health`, and bounded waits.

use std::time::Duration;

use parlor::{BackgroundNode, Config};
use parlor_client::protocol::{ErrorCode, ServerFrame, Value};
use parlor_client::{Client, ClientError};

/// The embedded configuration with an ephemeral port and fast heartbeats.
pub fn test_config() -> Config {
    let mut config = Config::embedded().expect("embedded config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.workers = 2;
    config.session.heartbeat_interval_ms = 200;
    config.session.client_timeout_ms = 1_000;
    // Dropped sessions leave at once and nothing is rate limited, unless a test asks.
    config.session.reconnect_grace_ms = 0;
    config.rate_limits.frames_per_second = 0;
    config.rate_limits.bytes_per_second = 0;
    config.rate_limits.connections_per_ip_per_second = 0;
    config
}

/// Shrinks the outbound budget to `bytes`, with the state, metadata and listing limits cut so
/// that the largest frame still fits it.
pub fn with_budget(mut config: Config, bytes: usize) -> Config {
    config.session.outbound_budget_bytes = bytes;
    config.limits.max_state_bytes = bytes / 4;
    config.limits.max_metadata_bytes = 256;
    config.limits.max_listed_rooms = 16;
    config
}

pub fn start(config: Config) -> BackgroundNode {
    config.validate().expect("valid test config");
    parlor::spawn(config).expect("node starts")
}

pub async fn connect(node: &BackgroundNode) -> Client {
    Client::connect(&node.ws_url()).await.expect("connect")
}

pub use crate::wait::within;

/// The next frame, failing the test after 5 s.
pub async fn next(client: &mut Client) -> ServerFrame {
    within(5, "a frame", client.next_frame())
        .await
        .expect("frame")
}

/// Skips frames until one matches, failing the test after 5 s.
pub async fn next_matching(
    client: &mut Client,
    what: &str,
    f: impl Fn(&ServerFrame) -> bool,
) -> ServerFrame {
    crate::wait::next_matching_within(client, 5, what, f).await
}

/// `GET path` (with its query) as (status, JSON body), whatever the status.
pub async fn get_json(node: &BackgroundNode, path: &str) -> (u16, serde_json::Value) {
    let url = node.http_url(path);
    tokio::task::spawn_blocking(move || {
        let response = match ureq::get(&url).call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(err) => panic!("GET {url}: {err}"),
        };
        let status = response.status();
        (status, response.into_json().expect("json body"))
    })
    .await
    .unwrap()
}

/// `GET /health` as (sessions, rooms).
pub async fn health(node: &BackgroundNode) -> (u64, u64) {
    let (_, body) = get_json(node, "/health").await;
    assert_eq!(body["status"], "ok");
    (
        body["sessions"].as_u64().unwrap(),
        body["rooms"].as_u64().unwrap(),
    )
}

/// Polls `/health` until it reports `want`, failing after `secs`.
pub async fn wait_health(node: &BackgroundNode, want: (u64, u64), secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = health(node).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health stayed at {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The code of a refused request.
pub fn refused_code(result: Result<(), ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(frame)) => frame.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Proves a session still works: it can join a fresh room and hear its own echo there.
pub async fn assert_usable(client: &mut Client, room: &str) {
    client.join(room).await.expect("join after error");
    client
        .emit(room, "probe", Value::from("still here"), true)
        .await
        .expect("emit");
    next_matching(
        client,
        "echo of probe",
        |f| matches!(f, ServerFrame::Event(e) if e.room == room && e.event == "probe"),
    )
    .await;
}

/// An HTTP request with `headers` and a `body`, as (status, content type, body bytes),
/// whatever the status.
pub async fn http(
    node: &BackgroundNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let url = node.http_url(path);
    let method = method.to_owned();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut request = ureq::request(&method, &url);
        for (name, value) in &headers {
            request = request.set(name, value);
        }
        let response = match request.send_bytes(&body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(err) => panic!("{method} {url}: {err}"),
        };
        let status = response.status();
        let content_type = response.content_type().to_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).expect("body");
        (status, content_type, bytes)
    })
    .await
    .unwrap()
}
