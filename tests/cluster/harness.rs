//! The cluster under test: `Redis` (a `redis-server` process with its own directory and port,
//! persisting to an append-only file so that a restart keeps the rooms; or, with
//! `PARLOR_TEST_REDIS_CLUSTER=1`, a Redis Cluster of three such processes, all masters) and
//! `NodeProcess` (a `parlor` process in cluster mode). Both are killed when dropped.

use std::collections::{BTreeSet, HashMap};
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

/// Set to 1, the tests run against a Redis Cluster rather than one Redis. A `parlor` process
/// must not inherit it: it names no setting.
pub const TEST_CLUSTER_VAR: &str = "PARLOR_TEST_REDIS_CLUSTER";

/// Whether the tests run against a Redis Cluster (`PARLOR_TEST_REDIS_CLUSTER=1`) rather than
/// one Redis.
pub fn redis_cluster() -> bool {
    std::env::var(TEST_CLUSTER_VAR).is_ok_and(|v| matches!(v.trim(), "1" | "true"))
}

/// How many masters the Redis Cluster under test has (no replicas).
const CLUSTER_MASTERS: usize = 3;

/// How long a problem the audit finds may take to go away before `assert_consistent` fails.
const SETTLE: Duration = Duration::from_secs(3);

/// The key prefix of the nodes under test.
const PREFIX: &str = "parlor:";

/// One `redis-server` process: its port and its directory, kept across restarts.
struct Server {
    child: Option<Child>,
    port: u16,
    /// The port of its cluster bus (a Redis Cluster only).
    bus_port: u16,
    dir: PathBuf,
}

impl Server {
    fn new(port: u16, bus_port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("parlor-redis-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        Self {
            child: None,
            port,
            bus_port,
            dir,
        }
    }

    fn spawn(&mut self, cluster: bool) {
        let mut command = Command::new(redis_server());
        command
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
            .arg(&self.dir);
        if cluster {
            // nodes.conf is written in `dir`: a restart comes back with the same cluster.
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--cluster-port",
                &self.bus_port.to_string(),
            ]);
        }
        let child = command
            .current_dir(&self.dir)
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

    /// A plain connection to this one process.
    fn connection(&self) -> redis::Connection {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("client");
        let connection = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect to redis-server");
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        connection
    }
}

pub struct Redis {
    /// One process, or the masters of a Redis Cluster.
    servers: Vec<Server>,
    cluster: bool,
}

impl Redis {
    /// One Redis, or a Redis Cluster of three masters with `PARLOR_TEST_REDIS_CLUSTER=1`.
    pub fn start() -> Self {
        let cluster = redis_cluster();
        let count = if cluster { CLUSTER_MASTERS } else { 1 };
        // Every port distinct: a bus port is the cluster's as much as a client port.
        let mut ports = BTreeSet::new();
        let mut servers = Vec::new();
        while servers.len() < count {
            let (port, bus_port) = (free_port(), free_port());
            if port != bus_port && ports.insert(port) && ports.insert(bus_port) {
                servers.push(Server::new(port, bus_port));
            }
        }
        let mut redis = Self { servers, cluster };
        for server in &mut redis.servers {
            server.spawn(cluster);
        }
        if cluster {
            redis.create_cluster();
        }
        redis
    }

    /// Makes the processes one Redis Cluster, the slots shared among them, and waits for it.
    fn create_cluster(&self) {
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(self.servers.iter().map(|s| format!("127.0.0.1:{}", s.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.wait_for_cluster();
    }

    /// Waits until every node of the Redis Cluster says it is up, with every slot served and
    /// every other node known.
    fn wait_for_cluster(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for server in &self.servers {
            loop {
                let info = cli_at(server.port, false, &["CLUSTER", "INFO"]);
                let ok = info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_assigned:16384")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&format!("cluster_known_nodes:{}", self.servers.len()));
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Redis Cluster did not come up: node {} says\n{info}",
                    server.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Redis's URL; for a Redis Cluster, its first node's.
    pub fn url(&self) -> String {
        if self.cluster {
            format!("redis://127.0.0.1:{}", self.port())
        } else {
            format!("redis://127.0.0.1:{}/0", self.port())
        }
    }

    /// Redis's port; for a Redis Cluster, its first node's.
    pub fn port(&self) -> u16 {
        self.servers[0].port
    }

    /// The node that is home to `room` now (by the lease Redis holds), if any.
    pub fn home_of(&self, room: &str) -> Option<String> {
        let key = parlor::cluster::Keys::new(PREFIX).room(room).room;
        let home = self.cli(&["HGET", &key, "home"]);
        let home = home.trim();
        (!home.is_empty()).then(|| home.to_owned())
    }

    /// Stops Redis (SIGTERM: it finishes writing its file; every node of a Redis Cluster at
    /// once) and waits for it to exit.
    pub fn stop(&mut self) {
        self.signal("TERM");
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.wait();
            }
        }
    }

    /// Fails the test if the cluster's data in Redis breaks a rule of its model (see `audit`),
    /// printing what does.
    pub fn assert_consistent(&self) {
        // What the nodes were doing may still be under way (a client of the test's last step
        // leaving, a room's listing written right behind its commit), and the audit reads
        // room after room (on a Redis Cluster, master after master): a problem counts only
        // if it stays.
        let deadline = Instant::now() + SETTLE;
        loop {
            let problems = self.audit();
            if problems.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the cluster's data is inconsistent:\n{}",
                    problems.join("\n")
                );
            }
            eprintln!("AUDIT-TRANSIENT {problems:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The data model's rules, checked against everything Redis holds (on a Redis Cluster,
    /// every master's keys): every room has a lease and a checkpoint; no room holds more
    /// members than its seats; its members set is its checkpoint's members; every listed room
    /// exists and is listed with the checkpoint's member count; every room but a private one
    /// is listed. What breaks them, one problem a line.
    pub fn audit(&self) -> Vec<String> {
        let keys = parlor::cluster::Keys::new(PREFIX);
        let mut problems = Vec::new();
        let mut connections: Vec<redis::Connection> =
            self.servers.iter().map(Server::connection).collect();
        // The index is on one master of a Redis Cluster; the others answer MOVED.
        let mut listed: HashMap<String, rmpv::Value> = HashMap::new();
        for connection in &mut connections {
            let all: HashMap<String, Vec<u8>> = match redis::cmd("HGETALL")
                .arg(keys.index_rooms())
                .query(connection)
            {
                Ok(all) => all,
                Err(err) if err.code() == Some("MOVED") => continue,
                Err(err) => panic!("HGETALL {}: {err}", keys.index_rooms()),
            };
            for (name, listing) in all {
                match rmpv::decode::read_value(&mut listing.as_slice()) {
                    Ok(listing) => {
                        listed.insert(name, listing);
                    }
                    Err(err) => problems.push(format!("listing undecodable: {name}: {err}")),
                }
            }
        }
        let mut rooms = BTreeSet::new();
        let pattern = format!("{PREFIX}{{r:*}}:room:*");
        // A key a master lists is its own, and so are its room's other keys (one hash tag).
        for connection in &mut connections {
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(connection)
                .expect("KEYS");
            for key in found {
                let Some((tag, name)) = key
                    .strip_prefix(PREFIX)
                    .and_then(|k| k.strip_prefix("{r:"))
                    .and_then(|k| k.split_once("}:room:"))
                else {
                    problems.push(format!("not a room key: {key}"));
                    continue;
                };
                // The room and its members set as of one moment (they share a slot).
                let (fields, set): (Vec<Option<Vec<u8>>>, usize) = redis::pipe()
                    .atomic()
                    .cmd("HMGET")
                    .arg(&key)
                    .arg(&["home", "epoch", "until", "ck"][..])
                    .cmd("SCARD")
                    .arg(format!("{PREFIX}{{r:{tag}}}:members:{name}"))
                    .query(connection)
                    .expect("HMGET and SCARD");
                if fields.iter().all(Option::is_none) {
                    // Gone since KEYS listed it (no hash is empty).
                    continue;
                }
                rooms.insert(name.to_owned());
                let [Some(_), Some(_), Some(_), Some(ck)] = fields.as_slice() else {
                    problems.push(format!("room without a lease or checkpoint: {name}"));
                    continue;
                };
                let ck =
                    match parlor_protocol::decode_value::<parlor::registry::RoomCheckpoint>(ck, 64)
                    {
                        Ok(ck) => ck,
                        Err(err) => {
                            problems.push(format!("checkpoint undecodable: {name}: {err}"));
                            continue;
                        }
                    };
                let seats = ck.members.len();
                if seats > ck.max_members as usize {
                    problems.push(format!(
                        "room over its seats: {name} {seats}/{}",
                        ck.max_members
                    ));
                }
                if set != seats {
                    problems.push(format!(
                        "members set and checkpoint differ: {name} {set} vs {seats}"
                    ));
                }
                match listed.get(name) {
                    Some(entry) => {
                        let members = entry["info"]["members"].as_u64();
                        if members != Some(seats as u64) {
                            let members = members.map_or("no".to_owned(), |n| n.to_string());
                            problems.push(format!(
                                "listed with {members} members, has {seats}: {name}"
                            ));
                        }
                    }
                    None if !ck.private && seats > 0 => {
                        problems.push(format!("room not listed: {name}"));
                    }
                    None => {}
                }
            }
        }
        for name in listed.keys() {
            if !rooms.contains(name) {
                problems.push(format!("listed but gone: {name}"));
            }
        }
        problems
    }

    /// Runs a Redis command through `redis-cli` (on a Redis Cluster, at its first node,
    /// following redirections); answers its text.
    pub fn cli(&self, args: &[&str]) -> String {
        cli_at(self.port(), self.cluster, args)
    }

    /// Runs `cmd` on a new connection: to the one Redis, or to the Redis Cluster (routed by
    /// its keys).
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        if self.cluster {
            let client = redis::cluster::ClusterClient::new(vec![self.url()])?;
            cmd.query(&mut client.get_connection()?)
        } else {
            let client = redis::Client::open(self.url())?;
            cmd.query(&mut client.get_connection()?)
        }
    }

    /// Calls store function `function` on room `keys` (its three keys, as the nodes declare
    /// them) with `args`, each one argument; answers the reply.
    pub fn room_fcall<T: redis::FromRedisValue>(
        &self,
        function: &str,
        keys: &parlor::cluster::RoomKeys,
        args: &[&[u8]],
    ) -> T {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(function)
            .arg(3)
            .arg(&keys.room)
            .arg(&keys.members)
            .arg(&keys.log);
        for arg in args {
            cmd.arg(*arg);
        }
        self.query(&cmd)
            .unwrap_or_else(|err| panic!("{function}: {err}"))
    }

    /// SIGSTOP: Redis hangs, its connections open, answering nothing, until `thaw`.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONT: a frozen Redis runs again, reading what was sent to it meanwhile.
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Starts Redis again on the same port (every node of a Redis Cluster on its own), with
    /// what it wrote; a Redis Cluster is waited for until it is up again.
    pub fn restart(&mut self) {
        self.stop();
        for server in &mut self.servers {
            server.spawn(self.cluster);
        }
        if self.cluster {
            self.wait_for_cluster();
        }
    }

    /// Sends a signal to every process at once (one `kill`, so a Redis Cluster's nodes stop
    /// and go on together).
    fn signal(&self, name: &str) {
        let pids: Vec<String> = self
            .servers
            .iter()
            .filter_map(|s| s.child.as_ref())
            .map(|c| c.id().to_string())
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .args(&pids)
                .status();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir_all(&server.dir);
        }
    }
}

/// `redis-cli` against the Redis on `port` (`-c`: following a Redis Cluster's redirections).
fn cli_at(port: u16, follow: bool, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.args(["-p", &port.to_string()]);
    if follow {
        command.arg("-c");
    }
    let output = command.args(args).output().expect("run redis-cli");
    assert!(output.status.success(), "redis-cli failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
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

    /// A node that reaches Redis at `url` (a proxy in front of it, say; not with a Redis
    /// Cluster, whose redirections name its nodes' own addresses).
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
        // The node takes every PARLOR_* variable for a setting, and refuses one that is not.
        command.env_remove(TEST_CLUSTER_VAR);
        if redis_cluster() {
            command.env("PARLOR_CLUSTER_REDIS_CLUSTER", "true");
        }
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
