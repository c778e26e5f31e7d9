//! The subprotocols an upgrade offers: `parlor` is selected wherever it is in the list, on
//! whichever `Sec-WebSocket-Protocol` line; an offer without it is refused with 400 before any
//! session is made (a browser would fail a socket that selected none); a `bearer.<jwt>` entry
//! only carries the token.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// What the server answered an upgrade: status, headers (names lowercase) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn error_code(&self) -> String {
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not a JSON body: {}", String::from_utf8_lossy(&self.body)));
        body["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends a WebSocket handshake for `path` with each of `lines` as one header line, written as
/// given (a WebSocket library would join or reorder them), and reads the answer's head, and
/// its body when it has a Content-Length. A 101's connection is then dropped.
async fn upgrade(node: &parlor::BackgroundNode, path: &str, lines: &[&str]) -> Answer {
    let mut stream = TcpStream::connect(node.addr).await.expect("connect");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        node.addr
    );
    for line in lines {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let head_end = within(5, "the answer's head", async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the head: {raw:?}");
            raw.extend_from_slice(&chunk[..n]);
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                return at + 4;
            }
        }
    })
    .await;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if let (Some(length), true) = (length, status != 101) {
        within(5, "the answer's body", async {
            while body.len() < length {
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "closed inside the body");
                body.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
    }
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn parlor_is_selected_from_any_header_line_and_an_offer_without_it_is_refused() {
    let node = start(test_config());
    // No offer: no subprotocol, as before.
    let answer = upgrade(&node, "/ws", &[]).await;
    assert_eq!(answer.status, 101);
    assert!(answer.header("sec-websocket-protocol").is_empty());
    // `parlor` among others on one line, or on a line of its own after another.
    for lines in [
        &["Sec-WebSocket-Protocol: chat, parlor"][..],
        &[
            "Sec-WebSocket-Protocol: chat",
            "Sec-WebSocket-Protocol: parlor",
        ][..],
    ] {
        let answer = upgrade(&node, "/ws", lines).await;
        assert_eq!(answer.status, 101, "{lines:?}");
        assert_eq!(
            answer.header("sec-websocket-protocol"),
            ["parlor"],
            "{lines:?}"
        );
    }
    // Subprotocols offered, but not `parlor` (which is case-sensitive): 400, and no session.
    wait_health(&node, (0, 0), 5).await;
    for lines in [
        &["Sec-WebSocket-Protocol: chat"][..],
        &["Sec-WebSocket-Protocol: chat, Parlor"][..],
        &["Sec-WebSocket-Protocol: bearer.abc"][..],
    ] {
        let answer = upgrade(&node, "/ws", lines).await;
        assert_eq!(answer.status, 400, "{lines:?}");
        assert!(answer.header("sec-websocket-protocol").is_empty());
        assert_eq!(answer.error_code(), "subprotocol_required", "{lines:?}");
    }
    assert_eq!(health(&node).await, (0, 0));
}

#[tokio::test]
async fn a_bearer_entry_is_read_from_any_line_and_never_selected() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
    let mut config = test_config();
    config.auth.algorithm = parlor::config::AuthAlgorithm::HS256;
    config.auth.secret = SECRET.into();
    let node = start(config);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "ann", "exp": now + 600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let one_line = format!("Sec-WebSocket-Protocol: parlor, bearer.{token}");
    let second_line = format!("Sec-WebSocket-Protocol: bearer.{token}");
    for lines in [
        vec![one_line.as_str()],
        vec!["Sec-WebSocket-Protocol: parlor", second_line.as_str()],
    ] {
        let answer = upgrade(&node, "/ws", &lines).await;
        assert_eq!(answer.status, 101, "{lines:?}");
        assert_eq!(answer.header("sec-websocket-protocol"), ["parlor"]);
    }
    // The token alone is a valid token in an offer the browser would fail: refused.
    let answer = upgrade(&node, "/ws", &[second_line.as_str()]).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (400, "subprotocol_required")
    );
    // A bad token is still refused as a token first.
    let answer = upgrade(&node, "/ws", &["Sec-WebSocket-Protocol: parlor, bearer.x"]).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (401, "invalid_token")
    );
}
