//! The plain HTTP side as a client or an operator meets it: every error answer has the same
//! JSON body, `{"error": code, "message": text}`, whoever writes it; an address that cannot
//! be bound is named.

use crate::common::*;

/// Fails unless `body` is `{"error": code, "message": text}` (plus, at most, `extra`).
fn assert_error_body(what: &str, body: &[u8], code: &str, extra: &[&str]) {
    let body: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("{what}: not JSON: {}", String::from_utf8_lossy(body)));
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    let keys = body.as_object().map(|o| o.len()).unwrap_or_default();
    assert_eq!(keys, 2 + extra.len(), "{what}: {body}");
}

#[tokio::test]
async fn every_http_error_has_the_same_json_body() {
    let node = start(test_config());
    let cases = [
        ("GET", "/nowhere", 404, "not_found"),
        ("POST", "/rooms", 404, "not_found"),
        ("GET", "/ws", 400, "bad_request"),
        ("GET", "/rooms?limit=0", 400, "bad_query"),
        ("GET", "/api/rooms", 404, "api_disabled"),
        ("POST", "/api/rooms/table/events", 404, "api_disabled"),
    ];
    for (method, path, want_status, code) in cases {
        // Small: a body the server does not read makes it close the connection after its
        // answer, which a client still writing a large one may meet as a broken pipe. (That
        // the API refuses before it reads a body is api.rs's to show.)
        let body = if method == "POST" {
            br#"{"event":"x"}"#.to_vec()
        } else {
            vec![]
        };
        let (status, content_type, body) = http(&node, method, path, &[], body).await;
        let what = format!("{method} {path}");
        assert_eq!(
            (status, content_type.as_str()),
            (want_status, "application/json"),
            "{what}"
        );
        assert_error_body(&what, &body, code, &[]);
    }
    // The answer keeps its headers: a handshake of another WebSocket version is told which.
    let url = node.http_url("/ws");
    let (status, version, body) = tokio::task::spawn_blocking(move || {
        let request = ureq::get(&url)
            .set("connection", "upgrade")
            .set("upgrade", "websocket")
            .set("sec-websocket-version", "5")
            .set("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        match request.call() {
            Err(ureq::Error::Status(status, response)) => {
                let version = response.header("sec-websocket-version").map(str::to_owned);
                (status, version, response.into_string().unwrap_or_default())
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    })
    .await
    .unwrap();
    assert_eq!((status, version.as_deref()), (426, Some("13")));
    assert_error_body("version 5", body.as_bytes(), "upgrade_required", &[]);
}

#[tokio::test]
async fn a_node_at_its_connection_cap_says_so_in_the_common_body() {
    let mut config = test_config();
    config.limits.max_connections = 1;
    let node = start(config);
    let _only = connect(&node).await;
    let (status, _, body) = http(
        &node,
        "GET",
        "/ws",
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        vec![],
    )
    .await;
    assert_eq!(status, 503);
    assert_error_body(
        "the cap",
        &body,
        "too_many_connections",
        &["max_connections"],
    );
}

#[test]
fn a_bind_error_names_the_address_and_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["--bind", &addr, "--config", "/dev/null"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start parlor");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("parlor kept running on a taken address");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[tokio::test]
async fn ready_answers_503_once_the_node_shuts_down_while_health_stays_200() {
    let node = start(test_config());
    let mut client = connect(&node).await;
    client.join("hall").await.expect("join");
    let (status, body) = get_json(&node, "/ready").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    // What SIGTERM does first: the registry tells every session the node is going away.
    node.registry().shut_down().await;
    let (status, _, body) = http(&node, "GET", "/ready", &[], vec![]).await;
    assert_eq!(status, 503);
    assert_error_body("/ready", &body, "shutting_down", &[]);
    assert_eq!(get_json(&node, "/health").await.0, 200, "still alive");
}
