//! Graceful shutdown of the real binary: on SIGTERM or SIGINT every client sees close 1001
//! (going away), after everything the server held for it (state patches batched for a minute
//! are flushed first, and so are room frames a write delay holds), and the process exits 0
//! within `shutdown_timeout`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parlor_client::protocol::{close, ServerFrame, StateOp, Value};
use parlor_client::{Client, ClientError};

use crate::common::within;

const SHUTDOWN_TIMEOUT_MS: u64 = 3000;

/// Starts the `parlor` binary on a free port, its sessions holding room frames for
/// `write_delay_ms`; returns it and its address once it answers.
async fn start_binary(write_delay_ms: u64) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["--bind", &addr, "--config", "/dev/null"])
        .env(
            "PARLOR_SERVER_SHUTDOWN_TIMEOUT_MS",
            SHUTDOWN_TIMEOUT_MS.to_string(),
        )
        // Patches are held far longer than the test: only the shutdown's flush sends them.
        .env("PARLOR_ROOMS_STATE_PATCH_INTERVAL_MS", "60000")
        .env("PARLOR_SESSION_WRITE_DELAY_MS", write_delay_ms.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start parlor");
    let url = format!("ws://{addr}/ws");
    within(20, "the server to listen", async {
        while Client::connect(&url).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    (child, url)
}

async fn shuts_down_on(signal: &str, write_delay_ms: u64) {
    let (mut child, url) = start_binary(write_delay_ms).await;
    let mut clients = Vec::new();
    for n in 0..5 {
        let mut client = Client::connect(&url).await.expect("connect");
        client.join(&format!("room-{}", n % 2)).await.expect("join");
        clients.push(client);
    }
    // A state update in room-0, acknowledged but held by the server.
    clients[0]
        .update_state(
            "room-0",
            vec![StateOp::Set {
                path: vec!["final".into()],
                value: Value::from(true),
            }],
            None,
        )
        .await
        .expect("update");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let signalled = Instant::now();
    for (n, mut client) in clients.into_iter().enumerate() {
        let (patched, closed) = within(10, "the close", async {
            let mut patched = false;
            loop {
                match client.next_frame().await {
                    Ok(ServerFrame::StatePatch(p)) => patched |= p.room == "room-0",
                    Ok(_) => {}
                    Err(ClientError::Closed(frame)) => return (patched, frame),
                    Err(other) => panic!("client {n}: {other}"),
                }
            }
        })
        .await;
        assert_eq!(closed.map(|c| u16::from(c.code)), Some(close::GOING_AWAY));
        assert_eq!(
            patched,
            n % 2 == 0,
            "client {n} got the held patch before the close"
        );
    }
    // The process ends by itself, with status 0, within the timeout (plus time to be seen).
    let limit = Duration::from_millis(SHUTDOWN_TIMEOUT_MS) + Duration::from_secs(2);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if signalled.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after SIG{signal}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn sigterm_closes_every_session_with_1001_and_exits_0() {
    shuts_down_on("TERM", 0).await;
}

#[tokio::test]
async fn sigint_does_the_same() {
    shuts_down_on("INT", 0).await;
}

/// The patch the shutdown flushes reaches a session that holds room frames for 300 ms just
/// before the close: the close must write it first, not leave it to the timer.
#[tokio::test]
async fn a_write_delay_still_writes_every_held_frame_before_the_close() {
    shuts_down_on("TERM", 300).await;
}
