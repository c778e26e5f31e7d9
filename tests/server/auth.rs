//! Authentication at the upgrade: HS256 and RS256 tokens from the Authorization header, a
//! subprotocol or the query; expired, forged, wrongly signed and missing tokens get 401 before
//! any WebSocket; `sub` is the user others see; a rooms claim limits where it may go; and the
//! origin allow-list.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use parlor_client::protocol::{ErrorCode, PresenceStatus, ServerFrame};
use parlor_client::{Client, ClientError};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::*;

pub(crate) const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub(crate) fn hs256(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn rs256(claims: serde_json::Value) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/rs256-private.pem")).expect("private key");
    encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
    )
    .expect("sign")
}

pub(crate) fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "exp": now() + 600})
}

pub(crate) fn hs256_node() -> parlor::BackgroundNode {
    let mut config = test_config();
    config.auth.algorithm = parlor::config::AuthAlgorithm::HS256;
    config.auth.secret = SECRET.into();
    config.auth.allowed_origins = vec!["https://game.example".into()];
    start(config)
}

/// Opens a WebSocket with `headers` (and the URL's query); the HTTP status on refusal.
async fn open(url: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("unexpected failure: {err}"),
    }
}

#[tokio::test]
async fn a_valid_token_admits_and_its_sub_is_the_user_others_see() {
    let node = hs256_node();
    let alice = hs256(claims("alice"), SECRET);
    let bob = hs256(claims("bob"), SECRET);
    // From the query string...
    let mut a = Client::connect(&format!("{}?token={alice}", node.ws_url()))
        .await
        .expect("alice connects");
    assert_eq!(a.welcome().user.as_deref(), Some("alice"));
    // ...the Authorization header, and a subprotocol (as browsers must).
    let bearer = format!("Bearer {bob}");
    assert_eq!(
        open(&node.ws_url(), &[("authorization", &bearer)]).await,
        Ok(())
    );
    let protocols = format!("parlor, bearer.{bob}");
    assert_eq!(
        open(&node.ws_url(), &[("sec-websocket-protocol", &protocols)]).await,
        Ok(())
    );
    a.join("hall").await.expect("join");
    let mut b = Client::connect(&format!("{}?token={bob}", node.ws_url()))
        .await
        .expect("bob connects");
    let joined = b.join_room("hall", None).await.expect("join");
    assert_eq!(
        joined.users.get(&a.session_id()).map(String::as_str),
        Some("alice")
    );
    let presence = next_matching(
        &mut a,
        "presence",
        |f| matches!(f, ServerFrame::Presence(p) if p.status == PresenceStatus::Joined),
    )
    .await;
    assert!(matches!(presence, ServerFrame::Presence(p) if p.user.as_deref() == Some("bob")));
}

#[tokio::test]
async fn missing_expired_forged_and_wrongly_signed_tokens_get_401_before_the_upgrade() {
    let node = hs256_node();
    let url = node.ws_url();
    assert_eq!(open(&url, &[]).await, Err(401), "missing");
    let expired = hs256(serde_json::json!({"sub": "a", "exp": now() - 3600}), SECRET);
    assert_eq!(
        open(&format!("{url}?token={expired}"), &[]).await,
        Err(401),
        "expired"
    );
    let forged = hs256(claims("a"), "another-secret-that-is-long-enough-too!!");
    assert_eq!(
        open(&format!("{url}?token={forged}"), &[]).await,
        Err(401),
        "bad signature"
    );
    let other_algorithm = rs256(claims("a"));
    assert_eq!(
        open(&format!("{url}?token={other_algorithm}"), &[]).await,
        Err(401),
        "wrong algorithm"
    );
    let no_sub = hs256(serde_json::json!({"exp": now() + 600}), SECRET);
    assert_eq!(
        open(&format!("{url}?token={no_sub}"), &[]).await,
        Err(401),
        "no sub"
    );
    assert_eq!(
        open(&format!("{url}?token=garbage"), &[]).await,
        Err(401),
        "garbage"
    );
    let (status, body) = get_json(&node, "/ws").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_missing"))
    );
}

#[tokio::test]
async fn rs256_tokens_are_checked_with_the_public_key() {
    let mut config = test_config();
    config.auth.algorithm = parlor::config::AuthAlgorithm::RS256;
    config.auth.public_key_file = format!("{FIXTURES}/rs256-public.pem").into();
    let node = start(config);
    let url = node.ws_url();
    let good = rs256(claims("carol"));
    let client = Client::connect(&format!("{url}?token={good}"))
        .await
        .expect("rs256 admits");
    assert_eq!(client.welcome().user.as_deref(), Some("carol"));
    // An HS256 token, even one signed with the public key's bytes, is refused.
    let pem = std::fs::read_to_string(format!("{FIXTURES}/rs256-public.pem")).expect("pem");
    let confused = hs256(claims("mallory"), &pem);
    assert_eq!(
        open(&format!("{url}?token={confused}"), &[]).await,
        Err(401)
    );
}

#[tokio::test]
async fn a_rooms_claim_forbids_other_rooms() {
    let node = hs256_node();
    let token = hs256(
        serde_json::json!({"sub": "dave", "exp": now() + 600, "rooms": ["match-*"]}),
        SECRET,
    );
    let mut d = Client::connect(&format!("{}?token={token}", node.ws_url()))
        .await
        .expect("connect");
    d.join("match-42").await.expect("an allowed room");
    match d.join("staff").await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("expected forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn an_origin_not_on_the_allow_list_gets_403() {
    let node = hs256_node();
    let token = hs256(claims("erin"), SECRET);
    let url = format!("{}?token={token}", node.ws_url());
    assert_eq!(
        open(&url, &[("origin", "https://evil.example")]).await,
        Err(403)
    );
    assert_eq!(
        open(&url, &[("origin", "https://game.example")]).await,
        Ok(())
    );
}

/// The code of the 401 that refuses `token` on `node`.
async fn refusal(node: &parlor::BackgroundNode, token: &str) -> (u16, String) {
    let (status, body) = get_json(node, &format!("/ws?token={token}")).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn nbf_is_checked_and_exp_has_only_the_configured_leeway() {
    let node = hs256_node();
    let url = node.ws_url();
    let early = hs256(
        serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}),
        SECRET,
    );
    assert_eq!(
        refusal(&node, &early).await,
        (401, "token_not_yet_valid".to_owned())
    );
    let started = hs256(
        serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() - 10}),
        SECRET,
    );
    assert_eq!(open(&format!("{url}?token={started}"), &[]).await, Ok(()));
    // Expired 30 s ago: inside jsonwebtoken's own 60 s, outside the default 5 s.
    let lapsed = hs256(serde_json::json!({"sub": "a", "exp": now() - 30}), SECRET);
    assert_eq!(
        refusal(&node, &lapsed).await,
        (401, "token_expired".to_owned())
    );
    let mut config = test_config();
    config.auth.algorithm = parlor::config::AuthAlgorithm::HS256;
    config.auth.secret = SECRET.into();
    config.auth.leeway_seconds = 120;
    let lenient = start(config);
    assert_eq!(
        open(&format!("{}?token={lapsed}", lenient.ws_url()), &[]).await,
        Ok(())
    );
}

/// A refusal's code and reason.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, Option<String>) {
    match result {
        Err(ClientError::Refused(e)) => (e.code, e.reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_read_only_claim_lets_a_user_hear_a_room_and_change_nothing() {
    use parlor_client::protocol::{StateOp, Value};
    let node = hs256_node();
    let connect = |claims: serde_json::Value| {
        let url = format!("{}?token={}", node.ws_url(), hs256(claims, SECRET));
        async move { Client::connect(&url).await.expect("connect") }
    };
    let mut alice = connect(claims("alice")).await;
    let mut bob = connect(serde_json::json!({
        "sub": "bob", "exp": now() + 600, "read_only_rooms": ["board-*"]
    }))
    .await;
    alice.join("board-1").await.expect("alice joins");
    bob.join("board-1").await.expect("a reader enters");
    // Bob hears the room.
    alice
        .emit("board-1", "note", Value::from("hi"), false)
        .await
        .expect("alice writes");
    let heard = next_matching(
        &mut bob,
        "alice's note",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "note"),
    )
    .await;
    assert!(matches!(heard, ServerFrame::Event(e) if e.from == alice.session_id()));
    // And changes nothing: emits, state writes, direct sends through the room.
    let read_only = (ErrorCode::Forbidden, Some("read_only".to_owned()));
    assert_eq!(
        refused(bob.emit("board-1", "note", Value::from("no"), true).await),
        read_only
    );
    let op = StateOp::Set {
        path: vec!["k".into()],
        value: Value::from(1),
    };
    assert_eq!(
        refused(bob.update_state("board-1", vec![op], None).await),
        read_only
    );
    assert_eq!(
        refused(bob.send_direct(alice.session_id(), "dm", Value::Nil).await).0,
        ErrorCode::UnknownSession
    );
    // Alice heard none of it; other rooms are as before (no rooms claim: any room).
    bob.join("lobby").await.expect("another room");
    alice.join("lobby").await.expect("alice too");
    bob.emit("lobby", "hello", Value::Nil, false)
        .await
        .expect("a writer there");
    let next = next_matching(&mut alice, "bob's hello", |f| {
        matches!(f, ServerFrame::Event(_))
    })
    .await;
    assert!(matches!(next, ServerFrame::Event(e) if e.event == "hello" && e.room == "lobby"));
}
