//! The browser side end to end. In headless Chromium (tests/browser/lobby.mjs, driven through
//! playwright-core), two pages create and join a room, one paints and chats, the other shows
//! both; then one page's connection is cut and it resumes with what it missed; and parlor.js's
//! codec is checked against PROTOCOL.md. `./scripts/test` installs
//! Debian's chromium, node and the npm package when missing; run alone, these tests say what is
//! missing instead of passing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("PARLOR_CHROMIUM") {
        return path.into();
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no chromium found: run ./scripts/test (it installs it) or set PARLOR_CHROMIUM");
}

#[tokio::test]
async fn two_browsers_share_a_room_a_painted_cell_and_a_chat_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script_dir = root.join("tests/browser");
    assert!(
        script_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
    );
    let artifacts = root.join("target/test-artifacts/browser");
    let _ = std::fs::remove_dir_all(&artifacts);
    // A browser under a loaded CI machine may answer pings late: a generous timeout, so that
    // this test is about the lobby and not about the heartbeat.
    let mut config = test_config();
    config.session.heartbeat_interval_ms = 1_000;
    config.session.client_timeout_ms = 20_000;
    // Bob's page drops and resumes within it.
    config.session.reconnect_grace_ms = 30_000;
    let node = start(config);
    let base = node.http_url("/");
    let run = tokio::process::Command::new("node")
        .arg(script_dir.join("lobby.mjs"))
        .arg(&base)
        .arg(&artifacts)
        .arg(chromium())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser test finished within 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed ({}):\n{stdout}\n{stderr}\n(screenshots in {})",
        output.status,
        artifacts.display()
    );
    for shot in ["lobby-alice.png", "lobby-bob.png"] {
        let bytes = std::fs::read(artifacts.join(shot)).expect("screenshot saved");
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
}

/// Runs `node tests/browser/<script>` and fails with its output unless it exits 0.
fn node_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .output()
        .expect("node runs (./scripts/test installs it)");
    assert!(
        output.status.success(),
        "{script}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// parlor.js's own MessagePack codec agrees, byte for byte, with every example in
/// PROTOCOL.md (which the Rust codec is checked against too), and handles what it used to get
/// wrong: Dates, Sets, prototypes and 64-bit integers.
#[test]
fn the_javascript_codec_matches_every_protocol_example() {
    node_script("codec.mjs");
}

/// parlor.d.ts matches parlor.js (exports, members, events), the package installs with npm
/// from the repository, and `tsc --noEmit` accepts tests/browser/usage.ts, which uses every
/// public call and event.
#[test]
fn the_typescript_types_match_parlor_js_and_type_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/typescript").exists(),
        "typescript is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
    );
    node_script("types.mjs");
}

/// parlor.js against a fake WebSocket: no request hangs (closed, dropped, timed out, or held
/// for the reconnect on request), and dropped connections resume or start afresh.
#[test]
fn the_javascript_client_settles_every_request_and_reconnects() {
    node_script("client.mjs");
}
