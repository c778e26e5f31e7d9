//! The browser side end to end. In headless Chromium (driven through playwright-core): the
//! lobby (tests/browser/lobby.mjs), where two pages create and join a room, one paints and
//! chats, the other shows both, then one page's connection is cut and it resumes with what it
//! missed, and a third page checks join by id, full rooms and rooms locked by their owner;
//! parlor.js reconnecting by itself (reconnect.mjs) through a cut connection and a restarted
//! server; and the same across the restart of a cluster node (cluster.mjs, with its own
//! `redis-server`). In node: parlor.js's codec against PROTOCOL.md and its edge cases
//! (codec.mjs), its request settling and reconnection against a fake WebSocket (client.mjs),
//! and its TypeScript types (types.mjs). `./scripts/test` installs Debian's chromium, node,
//! redis-server and the npm packages when missing; run alone, these tests say what is missing
//! instead of passing.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::page::chromium;

#[tokio::test]
async fn two_browsers_share_a_room_a_painted_cell_and_a_chat_line() {
    const SHOTS: [&str; 7] = [
        "lobby-alice.png",
        "lobby-bob.png",
        "lobby-bob-390.png",
        "lobby-full-owner.png",
        "lobby-full-list.png",
        "lobby-locked-owner.png",
        "lobby-locked-list.png",
    ];
    // A browser under a loaded CI machine may answer pings late: a generous timeout, so that
    // this test is about the lobby and not about the heartbeat.
    let mut config = test_config();
    config.session.heartbeat_interval_ms = 1_000;
    config.session.client_timeout_ms = 20_000;
    // Bob's page drops and resumes within it.
    config.session.reconnect_grace_ms = 30_000;
    let node = start(config);
    crate::page::run_page_script("lobby.mjs", &node.http_url("/"), &SHOTS).await;
}

/// Runs `node tests/browser/<script> <parlor binary> <artifact dir> <chromium>` (a script that
/// starts servers of its own) and fails with its output unless it exits 0 within `limit`. Past
/// `limit` the script gets SIGTERM, on which it kills what it started and exits, so that its
/// output still tells where it was; SIGKILL follows if it does not.
async fn run_server_script(script: &str, limit: Duration) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script_dir = root.join("tests/browser");
    assert!(
        script_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
    );
    let child = tokio::process::Command::new("node")
        .arg(script_dir.join(script))
        .arg(env!("CARGO_BIN_EXE_parlor"))
        .arg(root.join("target/test-artifacts/browser"))
        .arg(chromium())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (./scripts/test installs it)");
    let pid = child.id().expect("node's pid").to_string();
    let watchdog = tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
    });
    let output = tokio::time::timeout(limit + Duration::from_secs(15), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} ended within {limit:?} of SIGTERM"))
        .expect("node runs");
    let timed_out = watchdog.is_finished();
    watchdog.abort();
    assert!(
        output.status.success() && !timed_out,
        "{script} failed ({}{}):\n{}\n{}",
        output.status,
        if timed_out {
            ", stopped after its time limit"
        } else {
            ""
        },
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// parlor.js in headless Chromium reconnects by itself (tests/browser/reconnect.mjs, which
/// runs this package's `parlor` binary with JWT auth): through a relay that cuts the connection,
/// a page resumes its session with every missed frame; across a restart of the server on the
/// same port (SIGTERM, close 1001), pages start fresh sessions and are told the room was lost;
/// requests meanwhile reject at once or wait, as asked, and none is left pending. The lobby on
/// that server connects with a token from its address, or, refused, says why and takes one in
/// its token field.
#[tokio::test]
async fn parlor_js_resumes_after_a_cut_and_starts_afresh_after_a_restart() {
    run_server_script("reconnect.mjs", Duration::from_secs(120)).await;
}

/// parlor.js in headless Chromium across the restart of a cluster node
/// (tests/browser/cluster.mjs: a `redis-server` and two `parlor` nodes in cluster mode, JWT
/// auth): a node stopped with SIGTERM hands its sessions over, so its page, reconnecting by
/// itself to the node started again, resumes with every frame its peer on the other node sent
/// meanwhile, once and in order; stopped for longer than the grace, the page starts afresh and
/// is told the room was lost. No request is left pending.
#[tokio::test]
async fn parlor_js_resumes_across_a_cluster_node_restart_and_starts_afresh_past_the_grace() {
    run_server_script("cluster.mjs", Duration::from_secs(120)).await;
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
