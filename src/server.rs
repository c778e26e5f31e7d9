//! Assembles a node: starts the registry actor, binds the HTTP server, and tunes each accepted
//! TCP connection. `spawn` runs a whole node on a background thread (for tests and examples).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::ErrorHandlers;
use actix_web::{rt, web, App, HttpServer};

use crate::app::AppState;
use crate::auth::Authenticator;
use crate::cluster::{ClusterSettings, LinkConfig};
use crate::config::Config;
use crate::engine::single::{self, Timers};
use crate::engine::RegistryHandle;
use crate::game::{Ctx, Refusal, RoomLogic, RoomTypes, Value};
use crate::http::{routes, uniform_error, Page};
use crate::metrics::Metrics;
use crate::registry::RegistryLimits;
use crate::session::{SessionContext, SessionSettings};

/// A bound, not yet running, node.
pub struct Node {
    pub server: actix_web::dev::Server,
    pub addrs: Vec<SocketAddr>,
    pub registry: RegistryHandle,
}

impl Node {
    /// Runs the node until it is stopped; on SIGTERM or SIGINT it shuts down gracefully: it
    /// stops accepting, tells every session it is going away (1001), and returns once they
    /// are closed or `shutdown_timeout` has passed.
    pub async fn run_until_signalled(self) -> io::Result<()> {
        let handle = self.server.handle();
        let registry = self.registry.clone();
        rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing every session");
            registry.shut_down().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

async fn wait_for_signal() {
    use rt::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot listen for signals; stop the node with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

/// The registry's limits as `config` sets them.
pub fn registry_limits(config: &Config) -> RegistryLimits {
    RegistryLimits {
        max_rooms_per_session: config.limits.max_rooms_per_session,
        max_members_per_room: config.limits.max_members_per_room,
        max_room_name_bytes: config.limits.max_room_name_bytes,
        max_event_name_bytes: config.limits.max_event_name_bytes,
        max_rooms: config.limits.max_rooms,
        max_state_bytes: config.limits.max_state_bytes,
        max_state_values: config.limits.max_state_values,
        max_metadata_bytes: config.limits.max_metadata_bytes,
        max_listed_rooms: config.limits.max_listed_rooms,
        lobby_frame_bytes: config.rooms.lobby_frame_bytes,
        batch_state_patches: config.rooms.state_patch_interval_ms > 0,
        max_patch_batch_bytes: config.limits.max_frame_bytes,
        reconnect_grace: config.reconnect_grace(),
        history_frames: config.rooms.history_frames,
        history_bytes: config.rooms.history_bytes,
        replay_budget_bytes: config.session.outbound_budget_bytes / 2,
        max_away_sessions: config.limits.max_connections,
    }
}

/// Binds `config.server.bind` and prepares the node. Must be called inside an actix system.
pub fn bind(config: &Config) -> io::Result<Node> {
    bind_with(config, builtin_types(), Vec::new())
}

/// The room types every node runs: collaborative documents (`crate::document`).
fn builtin_types() -> RoomTypes {
    RoomTypes::new().add(crate::document::TYPE, crate::document::DocRoom::make)
}

/// A node with the room types (a game's rules) it runs: Parlor as a library.
///
/// ```no_run
/// # use parlor::game::{Ctx, Refusal, RoomLogic, Value};
/// # fn make_duel(_: &mut Ctx, _: &Value) -> Result<Box<dyn RoomLogic>, Refusal> { todo!() }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = parlor::Config::embedded()?;
/// let node = parlor::NodeBuilder::new(config)
///     .room_type("duel", make_duel)
///     .spawn()?;
/// println!("listening on {}", node.addr);
/// # Ok(())
/// # }
/// ```
pub struct NodeBuilder {
    config: Config,
    types: RoomTypes,
    pages: Vec<Page>,
}

impl NodeBuilder {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            types: builtin_types(),
            pages: Vec::new(),
        }
    }

    /// Serves `body` at `path` (GET) beside the lobby: a game's page, its script.
    pub fn page(
        mut self,
        path: &'static str,
        content_type: &'static str,
        body: &'static str,
    ) -> Self {
        self.pages.push(Page {
            path,
            content_type,
            body,
        });
        self
    }

    /// Registers a room type: `create` and `join_or_create` with `room_type: name` make rooms
    /// whose logic `factory` makes.
    pub fn room_type(
        mut self,
        name: &str,
        factory: impl Fn(&mut Ctx, &Value) -> Result<Box<dyn RoomLogic>, Refusal>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.types = self.types.add(name, factory);
        self
    }

    /// Binds and prepares the node (inside an actix system); run it with
    /// `Node::run_until_signalled`.
    pub fn bind(self) -> io::Result<Node> {
        bind_with(&self.config, self.types, self.pages)
    }

    /// Starts the node on a thread of its own.
    pub fn spawn(self) -> io::Result<BackgroundNode> {
        spawn_with(self.config, self.types, self.pages)
    }
}

fn bind_with(config: &Config, types: RoomTypes, pages: Vec<Page>) -> io::Result<Node> {
    let pages: Arc<[Page]> = pages.into();
    let limits = registry_limits(config);
    let metrics = Arc::new(if config.cluster.redis_url.is_empty() {
        Metrics::new()
    } else {
        Metrics::for_cluster()
    });
    let timers = Timers {
        state_patch_interval: Duration::from_millis(config.rooms.state_patch_interval_ms),
        lobby_interval: Duration::from_millis(config.rooms.lobby_interval_ms),
        clock_interval: (config.reconnect_grace() / 20)
            .clamp(Duration::from_millis(10), Duration::from_secs(1)),
        store_flush: Duration::from_millis(config.store.flush_ms),
    };
    let registry = if config.cluster.redis_url.is_empty() {
        single::start(
            limits,
            types,
            config.registry.logic_threads(),
            config.registry.queue_bytes,
            timers,
            (!config.store.dir.is_empty()).then(|| config.store.dir.clone().into()),
            Arc::clone(&metrics),
        )
    } else {
        let node = config.node_id();
        tracing::info!("cluster node {node}, rooms in Redis");

        crate::cluster::start(
            ClusterSettings {
                link: LinkConfig {
                    url: config.cluster.redis_url.clone(),
                    cluster: config.cluster.redis_cluster,
                    keys: crate::cluster::Keys::new(&config.cluster.key_prefix),
                    node,
                    library: crate::cluster::LIBRARY,
                },
                node_ttl: Duration::from_millis(config.cluster.node_ttl_ms),
                limits,
                lobby_interval: timers.lobby_interval,
                state_patch_interval: timers.state_patch_interval,
                clock_interval: timers.clock_interval,
                types,
                logic_threads: config.registry.logic_threads(),
            },
            config.registry.queue_bytes,
            Arc::clone(&metrics),
        )
    };
    let rates = &config.rate_limits;
    let state = web::Data::new(AppState {
        node: SessionContext {
            registry: registry.clone(),
            settings: Arc::new(SessionSettings::from_config(config)),
            metrics,
        },
        live_connections: Arc::new(AtomicUsize::new(0)),
        max_connections: config.limits.max_connections,
        outbound_budget_bytes: config.session.outbound_budget_bytes,
        max_listed_rooms: config.limits.max_listed_rooms,
        auth: Authenticator::from_config(&config.auth)?,
        connection_rate: crate::session::rate_quota(
            rates.connections_per_ip_per_second,
            rates.connection_burst,
        )
        .map(crate::app::ConnectionRate::new),
        api_key: config.api.key.clone(),
    });
    let shutdown_secs = config.shutdown_timeout().as_millis().div_ceil(1000) as u64;
    let user_timeout = config.client_timeout();
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(uniform_error))
            .app_data(state.clone())
            .configure(|cfg| routes(cfg, &pages))
    })
    .on_connect(move |conn, _| {
        if let Some(tcp) = conn.downcast_ref::<rt::net::TcpStream>() {
            tune_socket(tcp, user_timeout);
        }
    })
    .client_disconnect_timeout(Duration::from_millis(config.server.close_linger_ms))
    .max_connections(config.limits.max_connections.saturating_add(64))
    .backlog(4096)
    .disable_signals()
    .shutdown_timeout(shutdown_secs);
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let address = config.server.bind;
    let server = server
        .bind(address)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {address}: {err}")))?;
    let addrs = server.addrs();
    Ok(Node {
        server: server.run(),
        addrs,
        registry,
    })
}

/// Game traffic is small frames that must leave at once (no Nagle delay); and a peer that
/// stops acknowledging data for `client_timeout` is cut off by the kernel (TCP_USER_TIMEOUT),
/// so a client that never reads again cannot pin a connection forever.
fn tune_socket(tcp: &rt::net::TcpStream, user_timeout: Duration) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY");
    }
    if let Err(err) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(user_timeout)) {
        tracing::debug!(%err, "cannot set TCP_USER_TIMEOUT");
    }
}

/// A node running on a thread of its own.
pub struct BackgroundNode {
    pub addr: SocketAddr,
    handle: ServerHandle,
    registry: RegistryHandle,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl BackgroundNode {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The node's registry, e.g. to begin its shutdown as a signal would.
    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// Stops the node and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            drop(self.handle.stop(false));
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a node with `config` on a new thread and returns once it listens.
pub fn spawn(config: Config) -> io::Result<BackgroundNode> {
    spawn_with(config, builtin_types(), Vec::new())
}

fn spawn_with(config: Config, types: RoomTypes, pages: Vec<Page>) -> io::Result<BackgroundNode> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("parlor-node".into())
        .spawn(move || {
            let system = rt::System::new();
            let served = system.block_on(async move {
                let node = match bind_with(&config, types, pages) {
                    Ok(node) => node,
                    Err(err) => {
                        let _ = ready_tx.send(Err(io::Error::new(err.kind(), err.to_string())));
                        return Err(err);
                    }
                };
                let addr = node.addrs.first().copied();
                let _ = ready_tx.send(Ok((addr, node.server.handle(), node.registry.clone())));
                let served = node.server.await;
                // The registry's arbiter goes with the server, as a process's would: a node
                // stopped without its shutdown (`stop`, drop) is gone, not a headless registry
                // still beating in the cluster.
                rt::System::current().stop();
                served
            });
            // Carries out the stop: every arbiter of the node (its registry's) ends.
            let _ = system.run();
            served
        })?;
    match ready_rx.recv() {
        Ok(Ok((Some(addr), handle, registry))) => Ok(BackgroundNode {
            addr,
            handle,
            registry,
            thread: Some(thread),
        }),
        Ok(Ok((None, _, _))) => Err(io::Error::other("the node bound no address")),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(io::Error::other(
            "the node's thread ended before it listened",
        )),
    }
}
