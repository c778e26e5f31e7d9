//! The node's Prometheus metrics (`GET /metrics`), kept with `prometheus-client`. Counters are
//! atomics bumped where things happen; the gauges of live counts are set from the registry
//! when the metrics are scraped, so nothing on the hot path maintains them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use parlor_protocol::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub room_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Which rate limit a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Frames,
    Bytes,
    Connections,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Frames => "frames",
            Self::Bytes => "bytes",
            Self::Connections => "connections",
        }
    }
}

/// How a `resume` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Every room caught up from its history.
    Replayed,
    /// At least one room got a snapshot instead.
    Snapshot,
    Refused,
}

impl ResumeOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::Snapshot => "snapshot",
            Self::Refused => "refused",
        }
    }
}

/// Every metric of one node.
pub struct Metrics {
    registry: Registry,
    pub sessions: Gauge,
    pub sessions_away: Gauge,
    pub rooms: Gauge,
    pub frames_in: Counter,
    pub bytes_in: Counter,
    pub frames_out: Counter,
    pub bytes_out: Counter,
    /// Recipients of each room broadcast.
    pub fanout: Histogram,
    errors: Family<CodeLabel, Counter>,
    pub slow_consumer_evictions: Counter,
    rate_limited: Family<LimitLabel, Counter>,
    pub rate_limit_closes: Counter,
    resumes: Family<OutcomeLabel, Counter>,
    pub auth_failures: Counter,
    /// Cluster nodes only: 1 while Redis is reachable, 0 while degraded.
    pub cluster_up: Gauge,
    pub cluster_frames_lost: Counter,
    pub cluster_messages_dropped: Counter,
    /// Rooms with logic: how long each tick ran, how late it started, ticks that ran too long.
    pub logic_tick_seconds: Histogram,
    pub logic_tick_lateness_seconds: Histogram,
    pub logic_overruns: Counter,
    /// Failed writes of a single node's store of rooms' logic, and the rooms waiting for one.
    pub store_failures: Counter,
    pub store_waiting: Gauge,
    logic_rooms: Family<TypeLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of a node that runs alone: no `parlor_cluster_*` families, which would
    /// only ever say 0 (and `cluster_up` 0 reads as an outage).
    pub fn new() -> Self {
        Self::build(false)
    }

    /// The metrics of a cluster node: those of a single node and the `parlor_cluster_*` ones.
    pub fn for_cluster() -> Self {
        Self::build(true)
    }

    fn build(cluster: bool) -> Self {
        let mut registry = Registry::with_prefix("parlor");
        let metrics = Self {
            sessions: Gauge::default(),
            sessions_away: Gauge::default(),
            rooms: Gauge::default(),
            frames_in: Counter::default(),
            bytes_in: Counter::default(),
            frames_out: Counter::default(),
            bytes_out: Counter::default(),
            fanout: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            errors: Family::default(),
            slow_consumer_evictions: Counter::default(),
            rate_limited: Family::default(),
            rate_limit_closes: Counter::default(),
            resumes: Family::default(),
            auth_failures: Counter::default(),
            cluster_up: Gauge::default(),
            cluster_frames_lost: Counter::default(),
            cluster_messages_dropped: Counter::default(),
            logic_tick_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            // 50 µs to 410 ms by doubling: percentiles of lateness within a factor of two.
            logic_tick_lateness_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 14)),
            logic_overruns: Counter::default(),
            store_failures: Counter::default(),
            store_waiting: Gauge::default(),
            logic_rooms: Family::default(),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register("sessions", "Sessions connected", m.sessions.clone());
        registry.register(
            "sessions_away",
            "Sessions whose connection dropped, seats held for a resume",
            m.sessions_away.clone(),
        );
        registry.register("rooms", "Rooms open", m.rooms.clone());
        registry.register(
            "frames_received",
            "WebSocket data messages received from clients",
            m.frames_in.clone(),
        );
        registry.register(
            "received_bytes",
            "Payload bytes of the messages received from clients",
            m.bytes_in.clone(),
        );
        registry.register(
            "frames_sent",
            "Frames queued for clients",
            m.frames_out.clone(),
        );
        registry.register(
            "sent_bytes",
            "Payload bytes of the frames queued for clients",
            m.bytes_out.clone(),
        );
        registry.register(
            "broadcast_fanout",
            "Members each room broadcast was delivered to",
            m.fanout.clone(),
        );
        registry.register("errors", "Error frames sent, by code", m.errors.clone());
        registry.register(
            "slow_consumer_evictions",
            "Sessions closed for overrunning their outbound budget",
            m.slow_consumer_evictions.clone(),
        );
        registry.register(
            "rate_limited",
            "Frames dropped or connections refused by a rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "rate_limit_closes",
            "Sessions closed for sustained rate-limit violations",
            m.rate_limit_closes.clone(),
        );
        registry.register("resumes", "Resume requests, by outcome", m.resumes.clone());
        registry.register(
            "auth_failures",
            "Upgrades refused for a missing or invalid token or a disallowed origin",
            m.auth_failures.clone(),
        );
        registry.register(
            "logic_tick_seconds",
            "How long each tick of a room with logic ran",
            m.logic_tick_seconds.clone(),
        );
        registry.register(
            "logic_tick_lateness_seconds",
            "How late each tick of a room with logic started, after its due time",
            m.logic_tick_lateness_seconds.clone(),
        );
        registry.register(
            "logic_overruns",
            "Calls to a room's logic that ran longer than allowed (the room ended)",
            m.logic_overruns.clone(),
        );
        registry.register(
            "store_failures",
            "Failed writes of rooms' logic (documents) to the node's store; retried",
            m.store_failures.clone(),
        );
        registry.register(
            "store_waiting",
            "Rooms whose logic waits to be written to the node's store",
            m.store_waiting.clone(),
        );
        registry.register(
            "logic_rooms",
            "Rooms with logic open, by room type",
            m.logic_rooms.clone(),
        );
        if cluster {
            Self::register_cluster(&mut registry, m);
        }
        Self {
            registry,
            ..metrics
        }
    }

    fn register_cluster(registry: &mut Registry, m: &Self) {
        registry.register(
            "cluster_up",
            "Cluster nodes: 1 while Redis is reachable, 0 while the node is degraded",
            m.cluster_up.clone(),
        );
        registry.register(
            "cluster_frames_lost",
            "Cluster nodes: room frames never delivered because Redis no longer held them",
            m.cluster_frames_lost.clone(),
        );
        registry.register(
            "cluster_messages_dropped",
            "Cluster nodes: channel messages dropped while the node was behind (read back from the room's stream)",
            m.cluster_messages_dropped.clone(),
        );
    }

    /// A room of type `room_type` was made (`true`) or went.
    pub fn logic_room(&self, room_type: &str, made: bool) {
        let gauge = self.logic_rooms.get_or_create(&TypeLabel {
            room_type: room_type.to_owned(),
        });
        if made {
            gauge.inc();
        } else {
            gauge.dec();
        }
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str(),
            })
            .inc();
    }

    pub fn rate_limited(&self, limit: Limit) {
        self.rate_limited
            .get_or_create(&LimitLabel {
                limit: limit.as_str(),
            })
            .inc();
    }

    pub fn resume(&self, outcome: ResumeOutcome) {
        self.resumes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts `count` frames of `bytes` bytes each queued for clients.
    pub fn sent(&self, count: u64, bytes: usize) {
        self.frames_out.inc_by(count);
        self.bytes_out.inc_by(count * bytes as u64);
    }

    /// Counts `count` frames of `bytes` bytes in all queued for clients.
    pub fn sent_total(&self, count: u64, bytes: u64) {
        self.frames_out.inc_by(count);
        self.bytes_out.inc_by(bytes);
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
