//! The cluster under test: `Redis` (a `redis-server` process with its own directory and port,
//! persisting to an append-only file so that a restart keeps the rooms) and `NodeProcess` (a
//! `parlor` process in cluster mode). Both are killed when dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parlor_client::Client;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn redis_server() -> PathBuf {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "redis-server is missing: ./scripts/test installs it (apt-get install redis-server)",
        )
}

pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("parlor-redis-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Self {
            child: None,
            port,
            dir,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new(redis_server())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node that is home to `room` now (by the lease Redis holds), if any.
    pub fn home_of(&self, room: &str) -> Option<String> {
        let key = parlor::cluster::Keys::new("parlor:").room(room).room;
        let home = self.cli(&["HGET", &key, "home"]);
        let home = home.trim();
        (!home.is_empty()).then(|| home.to_owned())
    }

    /// Stops Redis (SIGTERM: it finishes writing its file) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    /// Fails the test if the cluster's data in Redis breaks a rule of its model (`parlor_audit`
    /// in `store.lua`: leases and checkpoints, no room over its seats, members sets, the index).
    pub fn assert_consistent(&self) {
        let problems = self.audit();
        assert!(
            problems.trim().is_empty() || problems.trim() == "(empty array)",
            "the cluster's data is inconsistent:\n{problems}"
        );
    }

    /// What `parlor_audit` finds wrong, as `redis-cli` prints it.
    pub fn audit(&self) -> String {
        // The function takes one MessagePack map: {prefix = "parlor:"}.
        let mut args = vec![0x81, 0xa6];
        args.extend_from_slice(b"prefix");
        args.push(0xa7);
        args.extend_from_slice(b"parlor:");
        let output = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "-x",
                "FCALL",
                "parlor_audit",
                "0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(&args)?;
                child.wait_with_output()
            })
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a Redis command through `redis-cli`; answers its text.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// SIGSTOP: Redis hangs, its connections open, answering nothing, until `thaw`.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            signal(child, "STOP");
        }
    }

    /// SIGCONT: a frozen Redis runs again, reading what was sent to it meanwhile.
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            signal(child, "CONT");
        }
    }

    /// Starts Redis again on the same port, with what it wrote.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

/// Settings every test node gets; a test adds its own.
const BASE_ENV: &[(&str, &str)] = &[
    ("PARLOR_RATE_LIMITS_FRAMES_PER_SECOND", "0"),
    ("PARLOR_RATE_LIMITS_BYTES_PER_SECOND", "0"),
    ("PARLOR_RATE_LIMITS_CONNECTIONS_PER_IP_PER_SECOND", "0"),
    ("PARLOR_SESSION_RECONNECT_GRACE_MS", "0"),
    ("PARLOR_ROOMS_LOBBY_INTERVAL_MS", "50"),
    ("PARLOR_CLUSTER_NODE_TTL_MS", "3000"),
];

pub struct NodeProcess {
    child: Option<Child>,
    addr: String,
}

impl NodeProcess {
    pub async fn start(redis: &Redis, name: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(&redis.url(), name, env).await
    }

    /// A node that reaches Redis at `url` (a proxy in front of it, say).
    pub async fn start_with(url: &str, name: &str, env: &[(&str, &str)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_parlor"));
        command
            .args(["--bind", &addr, "--config", "/dev/null"])
            .env("PARLOR_CLUSTER_REDIS_URL", url)
            .env("PARLOR_CLUSTER_NODE_ID", name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in BASE_ENV.iter().chain(env) {
            command.env(key, value);
        }
        let node = Self {
            child: Some(command.spawn().expect("start parlor")),
            addr,
        };
        within(20, "the node to reach Redis", node.wait_for_redis(true)).await;
        node
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await.expect("connect")
    }

    /// `/health` as JSON.
    pub async fn health(&self) -> serde_json::Value {
        let url = self.http_url("/health");
        tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .call()
                .ok()
                .and_then(|r| r.into_json().ok())
                .unwrap_or(serde_json::Value::Null)
        })
        .await
        .unwrap_or(serde_json::Value::Null)
    }

    /// Waits until `/health` says Redis is up (or down).
    pub async fn wait_for_redis(&self, up: bool) {
        let want = if up { "up" } else { "down" };
        loop {
            if self.health().await["cluster"]["redis"] == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM: the node shuts down gracefully; waits for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    /// An HTTP request with a bearer key, as (status, JSON body or null).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = self.http_url(path);
        let (method, auth) = (method.to_owned(), format!("Bearer {key}"));
        tokio::task::spawn_blocking(move || {
            let request = ureq::request(&method, &url).set("authorization", &auth);
            let response = match body {
                Some(body) => request.send_json(body),
                None => request.call(),
            };
            let response = match response {
                Ok(response) | Err(ureq::Error::Status(_, response)) => response,
                Err(err) => panic!("{method} {url}: {err}"),
            };
            let status = response.status();
            (
                status,
                response.into_json().unwrap_or(serde_json::Value::Null),
            )
        })
        .await
        .expect("request")
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis and `n` nodes named a, b, c...
pub async fn cluster(n: usize, env: &[(&str, &str)]) -> (Redis, Vec<NodeProcess>) {
    let redis = Redis::start();
    let mut nodes = Vec::new();
    for i in 0..n {
        let name = ((b'a' + i as u8) as char).to_string();
        nodes.push(NodeProcess::start(&redis, &name, env).await);
    }
    (redis, nodes)
}

pub use crate::wait::{next_matching_within as next_matching, within};
