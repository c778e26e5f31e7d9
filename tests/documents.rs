//! Collaborative documents across clients: two editors with the real `yjs` and `y-websocket`
//! npm packages on the y-websocket endpoint, a parlor.js editor (its Yjs provider) and a Rust
//! editor (`SharedDoc`) on Parlor's own protocol edit one document at once, and converge; a
//! late joiner gets it whole; readers, restarts, a failing store, unloading, the browser.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/editor.rs"]
mod editor;

use browser::http_get;
#[path = "support/wait.rs"]
#[allow(dead_code)]
mod wait;

use std::path::Path;
use std::time::Duration;

use editor::Editor;
use parlor_client::protocol::{RoomOptions, ServerFrame};
use parlor_client::{Handled, SharedDoc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use yrs::{GetString, Text, Transact};

const EDITS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y_websocket_parlor_js_and_rust_editors_edit_one_document_and_converge() {
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
    config.store.dir = String::new();
    let node = parlor::spawn(config).expect("node");
    let url = format!("ws://{}/ws", node.addr);
    // The Rust editor (parlor_client::SharedDoc on a reconnecting session) makes the document;
    // the npm editors (two y-websocket, one parlor.js) join it by its name.
    let (parlor, mut events) = parlor_client::Parlor::connect(&url).await.expect("rust");
    let mut rust = SharedDoc::open(parlor, "notes", yrs::Doc::new())
        .await
        .expect("the document");
    let text = rust.doc().get_or_insert_text("t");
    let text_of = |doc: &SharedDoc| text.get_string(&doc.doc().transact());
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
        rust.edit(|txn| {
            let end = text.len(txn);
            text.insert(txn, end, &mark);
        })
        .await
        .expect("an edit taken");
        // What the others did meanwhile.
        while let Some(event) = events.try_recv() {
            assert_ne!(rust.handle(&event).expect("readable"), Handled::Lost);
        }
    }
    let mut stdin = npm.stdin.take().expect("stdin");
    stdin.write_all(b"check\n").await.expect("told");
    let mut lines = BufReader::new(npm.stdout.take().expect("stdout")).lines();
    // The npm editors print their text (once the three agree) until the Rust editor, catching
    // up with a step 1, has the same.
    let converged = wait::within(60, "the npm and Rust editors converging", async {
        while let Some(line) = lines.next_line().await.expect("a line") {
            let seen: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert_eq!(
                seen["awareness"],
                serde_json::json!([true, true, true]),
                "{line}"
            );
            let text = seen["text"].as_str().expect("text").to_owned();
            rust.sync().await.expect("synced");
            if text_of(&rust) == text {
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
    let (late, _events) = parlor_client::Parlor::connect(&url).await.expect("late");
    let late = SharedDoc::open(late, "notes", yrs::Doc::new())
        .await
        .expect("opened");
    assert_eq!(text_of(&late), converged);
}

/// A node whose store keeps documents in `dir`.
fn node_with_store(dir: &Path) -> parlor::BackgroundNode {
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.store.dir = dir.display().to_string();
    config.store.flush_ms = 200;
    parlor::spawn(config).expect("node")
}

/// Opens document `name` on `node` (made, or made again from the store), synced.
async fn open(node: &parlor::BackgroundNode, name: &str) -> Editor {
    let mut client = parlor_client::Client::connect(&format!("ws://{}/ws", node.addr))
        .await
        .expect("client");
    client
        .create(
            Some(name),
            RoomOptions {
                room_type: Some("yjs".into()),
                ..RoomOptions::default()
            },
        )
        .await
        .expect("the document");
    let mut editor = Editor::new(client, name);
    assert!(matches!(editor.sync().await, ServerFrame::Ok { .. }));
    editor
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("parlor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&dir);
    dir
}

/// A document outlives its node: written as it changes (and at shutdown), it is there again
/// when the room is made again on the restarted node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_is_back_after_a_restart() {
    let dir = scratch("restart");
    let node = node_with_store(&dir);
    let mut ann = open(&node, "kept").await;
    for word in ["kept ", "across ", "a ", "restart"] {
        assert!(matches!(ann.append(word).await, ServerFrame::Ok { .. }));
    }
    node.registry().shut_down().await;
    drop(node);
    let node = node_with_store(&dir);
    let bob = open(&node, "kept").await;
    assert_eq!(bob.text(), "kept across a restart");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store that cannot write (its directory is a file) is retried, counted and shown in
/// `/health`; editing goes on meanwhile, and once it can write, the document is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_is_retried_reported_and_recovers() {
    let dir = scratch("failing");
    std::fs::write(&dir, b"not a directory").expect("a file in the way");
    let node = node_with_store(&dir);
    let mut ann = open(&node, "notes").await;
    assert!(matches!(ann.append("one").await, ServerFrame::Ok { .. }));
    let health = wait::within(10, "the store reported failing", async {
        loop {
            let health = http_get(node.addr, "/health");
            if health.contains(r#""store":"failing""#) {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(health.contains(r#""status":"ok""#), "{health}");
    assert!(matches!(ann.append(" two").await, ServerFrame::Ok { .. }));
    let metrics = http_get(node.addr, "/metrics");
    assert!(metrics.contains("parlor_store_failures_total"), "{metrics}");
    assert!(metrics.contains("parlor_store_waiting 1"), "{metrics}");
    // The way is clear again: the next try writes it.
    std::fs::remove_file(&dir).expect("cleared");
    wait::within(10, "the store writing again", async {
        while !http_get(node.addr, "/health").contains(r#""store":"ok""#) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    node.registry().shut_down().await;
    drop(node);
    let node = node_with_store(&dir);
    assert_eq!(open(&node, "notes").await.text(), "one two");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16: a document no one is in is unloaded (its room goes when its last member leaves)
/// and loaded again on demand from its newest snapshot: reopened at once, before the store
/// was handed it, and again while the store cannot write it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_no_one_is_in_is_unloaded_and_loaded_again_without_loss() {
    let dir = scratch("unload");
    std::fs::write(&dir, b"not a directory").expect("a file in the way");
    let node = node_with_store(&dir);
    let unloaded = || async {
        wait::within(10, "the document unloaded", async {
            while !http_get(node.addr, "/metrics")
                .contains(r#"parlor_logic_rooms{room_type="yjs"} 0"#)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    };
    let mut ann = open(&node, "idle").await;
    assert!(matches!(ann.append("first").await, ServerFrame::Ok { .. }));
    ann.client.leave("idle").await.expect("ann leaves");
    unloaded().await;
    // At once: nothing was handed to the store yet.
    let mut bob = open(&node, "idle").await;
    assert_eq!(bob.text(), "first");
    assert!(matches!(
        bob.append(" second").await,
        ServerFrame::Ok { .. }
    ));
    bob.client.leave("idle").await.expect("bob leaves");
    unloaded().await;
    // Once the store tried and failed to write it: what waits for the disk is read back.
    wait::within(10, "the snapshot waiting for the disk", async {
        while !http_get(node.addr, "/metrics").contains("parlor_store_waiting 1") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(open(&node, "idle").await.text(), "first second");
    let _ = std::fs::remove_file(&dir);
}

/// parlor.js with its Yjs provider (web/parlor-yjs.js) and an unchanged y-websocket client,
/// 500 random edits each as fast as they can, under the default rate limits: editors over
/// the limit lose nothing (the provider syncs again, y-websocket reconnects), both converge
/// and see each other's awareness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parlor_js_provider_and_y_websocket_converge_under_the_rate_limits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.store.dir = String::new();
    // The keeper below reads nothing while the editors work: no heartbeat timeout for it.
    config.session.client_timeout_ms = 120_000;
    let node = parlor::spawn(config).expect("node");
    // A member from the start keeps the room (and its document) after the editors leave.
    let mut keeper = open(&node, "shared").await;
    let run = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/parlor-yjs.mjs"))
        .arg(node.addr.to_string())
        .arg("shared")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("done within 60 s")
        .expect("node runs (./scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let text = text["text"].as_str().expect("text").to_owned();
    // What the node holds is what both editors show.
    assert!(matches!(keeper.sync().await, ServerFrame::Ok { .. }));
    assert_eq!(keeper.text(), text);
}

/// The collaborative editor page (/editor: CodeMirror and y-codemirror.next bundled from npm,
/// over parlor-yjs.js) in headless Chromium (tests/browser/editor.mjs): two pages type into
/// one document, each sees the other's text and cursor. Screenshots editor-{alice,bob}.png in
/// target/test-artifacts/browser/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_edit_one_document_and_see_each_others_cursor() {
    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.store.dir = String::new();
    let node = parlor::spawn(config).expect("node");
    let shots = ["editor-alice.png", "editor-bob.png"];
    browser::run_page_script("editor.mjs", &node.http_url("/"), &shots).await;
}

const SECRET: &str = "a-documents-test-secret-long-enough-for-hs256";

/// A signed token for `sub` with `claims` besides.
fn token(sub: &str, mut claims: serde_json::Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + 600;
    claims["sub"] = sub.into();
    claims["exp"] = exp.into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Issue 16: a reader (the read-only claim) gets the document and shows its cursor; its
/// edits are dropped, on Parlor's protocol (refused `read_only`) and on the y-websocket
/// endpoint (as y-protocols does, silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_edits_are_dropped_and_it_still_reads_and_shows_its_cursor() {
    use futures_util::{SinkExt, StreamExt};
    use parlor_client::protocol::{ErrorCode, Value};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use yrs::sync::{Awareness, Message, SyncMessage};
    use yrs::updates::encoder::Encode;
    use yrs::{ReadTxn, Text, Transact};

    let mut config = parlor::Config::embedded().expect("config");
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.auth.algorithm = parlor::config::AuthAlgorithm::HS256;
    config.auth.secret = SECRET.into();
    let node = parlor::spawn(config).expect("node");
    let url = |path: &str, who: &str, claims: serde_json::Value| {
        format!("ws://{}{path}?token={}", node.addr, token(who, claims))
    };
    let reading = serde_json::json!({"read_only_rooms": ["notes"]});

    let client = parlor_client::Client::connect(&url("/ws", "writer", serde_json::json!({})))
        .await
        .expect("writer");
    let mut writer = Editor::new(client, "notes");
    writer
        .client
        .create(
            Some("notes"),
            RoomOptions {
                room_type: Some("yjs".into()),
                ..RoomOptions::default()
            },
        )
        .await
        .expect("the document");
    writer.sync().await;
    assert!(matches!(
        writer.append("hello").await,
        ServerFrame::Ok { .. }
    ));

    // The reader reads.
    let mut client = parlor_client::Client::connect(&url("/ws", "reader", reading.clone()))
        .await
        .expect("reader");
    client.join("notes").await.expect("a reader enters");
    let mut reader = Editor::new(client, "notes");
    assert!(matches!(reader.sync().await, ServerFrame::Ok { .. }));
    assert_eq!(reader.text(), "hello");
    // Its edit is refused and goes nowhere.
    match reader.append(" forged").await {
        ServerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::RoomRefused);
            assert_eq!(e.reason.as_deref(), Some("read_only"));
        }
        other => panic!("expected read_only, got {other:?}"),
    }
    // Its cursor (awareness) is shown.
    let mut awareness = Awareness::new(yrs::Doc::with_client_id(77));
    awareness.set_local_state_raw(r#"{"user":{"name":"reader"}}"#);
    let update = awareness.update().expect("an awareness update");
    assert!(matches!(
        reader.send(Message::Awareness(update).encode_v1()).await,
        ServerFrame::Ok { .. }
    ));
    wait::next_matching_within(&mut writer.client, 5, "the reader's cursor", |f| {
        matches!(f, ServerFrame::Event(e) if e.event == "y"
            && matches!(&e.data, Value::Binary(b) if b.first() == Some(&1)))
    })
    .await;

    // The Rust client's SharedDoc as a reader: it reads, its edit is refused and it knows it
    // is a reader; it still syncs (answering no step 1) and shows its cursor.
    let (parlor, _events) = parlor_client::Parlor::connect(&url("/ws", "reader2", reading.clone()))
        .await
        .expect("reader");
    let mut shared = SharedDoc::open(parlor, "notes", yrs::Doc::new())
        .await
        .expect("a reader opens the document");
    let shared_text = shared.doc().get_or_insert_text("t");
    assert_eq!(shared_text.get_string(&shared.doc().transact()), "hello");
    let refused = shared
        .edit(|txn| shared_text.insert(txn, 0, "forged "))
        .await;
    assert!(
        matches!(refused, Err(parlor_client::ClientError::Refused(_))),
        "{refused:?}"
    );
    assert!(shared.is_read_only());
    assert!(shared
        .edit(|txn| shared_text.insert(txn, 0, "again "))
        .await
        .is_err());
    // Its document now holds an edit the room lacks: a sync still takes the room's.
    shared.sync().await.expect("a reader syncs");
    shared
        .set_local_state(Some(r#"{"user":{"name":"reader2"}}"#))
        .await
        .expect("its cursor");

    // On the y-websocket endpoint, a reader's update is dropped without a word.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(url("/yjs/notes", "reader", reading.clone()))
            .await
            .expect("y-websocket reader");
    let forged = {
        let doc = yrs::Doc::with_client_id(99);
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "forged ");
        let update = doc
            .transact()
            .encode_state_as_update_v1(&Default::default());
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    };
    socket.send(Ws::binary(forged)).await.expect("sent");
    // A step 1 after it: its answer (a step 2) comes once the update before was taken.
    let step1 = Message::Sync(SyncMessage::SyncStep1(Default::default())).encode_v1();
    socket.send(Ws::binary(step1)).await.expect("sent");
    wait::within(10, "the step 2", async {
        loop {
            let Some(Ok(Ws::Binary(bytes))) = socket.next().await else {
                panic!("the y-websocket connection ended");
            };
            if bytes.starts_with(&[0, 1]) {
                return;
            }
        }
    })
    .await;

    // A late writer sees only the writer's text.
    let client = parlor_client::Client::connect(&url("/ws", "late", serde_json::json!({})))
        .await
        .expect("late");
    let mut late = Editor::new(client, "notes");
    late.client.join("notes").await.expect("late joins");
    late.sync().await;
    assert_eq!(late.text(), "hello");
    drop(node);
}
