//! What an operator sees of a cluster node: the log when Redis is away at start and when it
//! comes, with the URL's password kept out of it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a process writes to stderr, as they come.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn follow(child: &mut Child) -> Self {
        let log = Self::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&log.0);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        log
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, what: &[&str]) -> usize {
        let has = |line: &String| what.iter().all(|w| line.contains(w));
        self.lines().iter().filter(|l| has(l)).count()
    }

    async fn wait_for(&self, what: &[&str]) {
        within(15, "a log line", async {
            while self.count(what) == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_at_start_is_warned_once_without_the_password_and_its_arrival_logged() {
    const PASSWORD: &str = "hunter2-secret";
    let port = free_port();
    let shown = format!("redis://127.0.0.1:{port}/0");
    let mut node = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--config", "/dev/null"])
        .env(
            "PARLOR_CLUSTER_REDIS_URL",
            format!("redis://:{PASSWORD}@127.0.0.1:{port}/0"),
        )
        .env("RUST_LOG", "parlor=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parlor");
    let log = Log::follow(&mut node);
    let _node = Killed(node);
    for connection in ["commands", "subscriptions"] {
        let warning = ["WARN", "cannot reach Redis at", &shown, connection];
        log.wait_for(&warning).await;
    }
    // Retries come at least once a second; they do not warn again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(log.count(&["WARN"]), 2, "{:#?}", log.lines());

    let redis = Command::new(redis_server())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--requirepass", PASSWORD])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let _redis = Killed(redis);
    log.wait_for(&["INFO", "command connection to Redis at", &shown, "is up"])
        .await;
    log.wait_for(&[
        "INFO",
        "subscription connection to Redis at",
        &shown,
        "is up again",
    ])
    .await;
    assert_eq!(log.count(&[PASSWORD]), 0, "{:#?}", log.lines());
}
