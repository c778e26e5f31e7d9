//! Collaborative documents across clients: two editors with the real `yjs` and `y-websocket`
//! npm packages on the y-websocket endpoint and a Rust editor on Parlor's own protocol edit
//! one document at once, and converge; a late joiner gets it whole.

#[path = "support/editor.rs"]
mod editor;
#[path = "support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::path::Path;
use std::time::Duration;

use editor::Editor;
use parlor_client::protocol::{RoomOptions, ServerFrame};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EDITS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y_websocket_clients_and_a_rust_client_edit_one_document_and_converge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("tests/browser");
    assert!(
        scripts.join("node_modules/y-websocket").exists(),
        "y-websocket is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
    );
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.rate_limits.frames_per_second = 0;
    config.rate_limits.bytes_per_second = 0;
    let node = parlor::spawn(config).expect("node");
    let url = format!("ws://{}/ws", node.addr);
    // The Rust editor makes the document; the npm editors join it by its name.
    let mut client = parlor_client::Client::connect(&url).await.expect("rust");
    client
        .create(
            Some("notes"),
            RoomOptions {
                room_type: Some("yjs".into()),
                ..RoomOptions::default()
            },
        )
        .await
        .expect("the document");
    let mut rust = Editor::new(client, "notes");
    assert!(matches!(rust.sync().await, ServerFrame::Ok { .. }));
    let mut npm = tokio::process::Command::new("node")
        .arg(scripts.join("yjs.mjs"))
        .arg(format!("ws://{}", node.addr))
        .arg("notes")
        .arg(EDITS.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (./scripts/test installs it)");
    // Edits at once: the Rust editor's while the npm ones make theirs.
    for n in 0..EDITS {
        let mark = char::from(b'A' + (n % 26) as u8).to_string();
        assert!(matches!(rust.append(&mark).await, ServerFrame::Ok { .. }));
    }
    let mut stdin = npm.stdin.take().expect("stdin");
    stdin.write_all(b"check\n").await.expect("told");
    let mut lines = BufReader::new(npm.stdout.take().expect("stdout")).lines();
    // The npm editors print their text (once they agree) until the Rust editor, catching up
    // with a step 1, has the same.
    let converged = wait::within(60, "the npm and Rust editors converging", async {
        while let Some(line) = lines.next_line().await.expect("a line") {
            let seen: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert_eq!(seen["awareness"], serde_json::json!([true, true]), "{line}");
            let text = seen["text"].as_str().expect("text").to_owned();
            assert!(matches!(rust.sync().await, ServerFrame::Ok { .. }));
            if rust.text() == text {
                return text;
            }
        }
        panic!("the npm editors stopped");
    })
    .await;
    assert!(
        converged.len() > EDITS,
        "everyone's edits are in: {}",
        converged.len()
    );
    // The Rust editor's letters are upper case (the npm editors delete some of them).
    assert!(converged.contains(|c: char| c.is_ascii_uppercase()));
    stdin.write_all(b"done\n").await.expect("told");
    let _ = tokio::time::timeout(Duration::from_secs(10), npm.wait()).await;
    // A late joiner gets it whole.
    let mut late = parlor_client::Client::connect(&url).await.expect("late");
    late.join_room("notes", None).await.expect("joins");
    let mut late = Editor::new(late, "notes");
    assert!(matches!(late.sync().await, ServerFrame::Ok { .. }));
    assert_eq!(late.text(), converged);
}
