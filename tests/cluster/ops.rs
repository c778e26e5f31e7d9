//! What an operator sees of a cluster node: the log when Redis is away at start and when it
//! comes, with the URL's password kept out of it (on a Redis Cluster too).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

/// A directory removed when dropped.
struct RemovedDir(PathBuf);

impl Drop for RemovedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    let cluster = redis_cluster();
    let shown = if cluster {
        format!("redis://127.0.0.1:{port}")
    } else {
        format!("redis://127.0.0.1:{port}/0")
    };
    let url = shown.replace("redis://", &format!("redis://:{PASSWORD}@"));
    let mut node = Command::new(env!("CARGO_BIN_EXE_parlor"));
    node.args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--config", "/dev/null"])
        .env_remove(TEST_CLUSTER_VAR)
        .env("PARLOR_CLUSTER_REDIS_URL", url)
        .env("RUST_LOG", "parlor=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if cluster {
        node.env("PARLOR_CLUSTER_REDIS_CLUSTER", "true");
    }
    let mut node = node.spawn().expect("start parlor");
    let log = Log::follow(&mut node);
    let _node = Killed(node);
    for connection in ["commands", "subscriptions"] {
        let warning = ["WARN", "cannot reach Redis at", &shown, connection];
        log.wait_for(&warning).await;
    }
    // Retries come at least once a second; they do not warn again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(log.count(&["WARN"]), 2, "{:#?}", log.lines());

    let dir = RemovedDir(
        std::env::temp_dir().join(format!("parlor-ops-redis-{port}-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).expect("redis dir");
    let mut redis = Command::new(redis_server());
    redis
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--requirepass", PASSWORD])
        .arg("--dir")
        .arg(&dir.0)
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if cluster {
        // A Redis Cluster of one node, which serves every slot once it runs.
        redis.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &free_port().to_string(),
        ]);
    }
    let _redis = Killed(redis.spawn().expect("start redis-server"));
    if cluster {
        within(10, "the Redis Cluster node to take every slot", async {
            loop {
                let output = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "-a", PASSWORD, "--no-auth-warning"])
                    .args(["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
                    .output()
                    .expect("run redis-cli");
                if String::from_utf8_lossy(&output.stdout).trim() == "OK" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
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
