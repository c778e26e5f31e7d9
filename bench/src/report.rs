//! What a run reports: one struct per scenario, printed as a human table and as one JSON line
//! (prefixed `BENCH_JSON `) that `bench/report.py` collects into BENCHMARKS.md.

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub target: String,
    pub rooms: usize,
    pub members: usize,
    pub senders_per_room: usize,
    /// Messages per second per sender; `None` when saturating.
    pub rate: Option<f64>,
    /// In-flight messages per sender when saturating.
    pub window: Option<usize>,
    pub payload: usize,
    pub seconds: f64,
    pub offered_per_sec: Option<f64>,
    pub sent_per_sec: f64,
    pub achieved_per_sec: f64,
    pub loss: f64,
    pub latency_us: Percentiles,
    pub server_cpu_seconds: Option<f64>,
    pub generator_cpu_seconds: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub generator_cpu_us_per_delivery: Option<f64>,
    pub connect_seconds: f64,
    pub server_rss_idle: Option<u64>,
    pub server_rss_joined: Option<u64>,
    pub server_rss_end: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub target: String,
    pub connections: usize,
    pub room_size: usize,
    pub connect_seconds: f64,
    pub server_rss_idle: Option<u64>,
    pub server_rss_joined: Option<u64>,
    pub rss_per_connection: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub target: String,
    pub connections: usize,
    pub joined: usize,
    pub failures: usize,
    pub seconds_to_all_joined: f64,
    pub connects_per_sec: f64,
}

/// One scenario's result, tagged by kind in its JSON line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "scenario", rename_all = "snake_case")]
pub enum Report {
    Fanout(FanoutReport),
    Idle(IdleReport),
    Storm(StormReport),
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".into(), |v| v.to_string())
}

fn mib(bytes: Option<u64>) -> String {
    opt(bytes.map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))))
}

impl Report {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, String)> = match self {
            Report::Fanout(r) => vec![
                ("target", r.target.clone()),
                (
                    "shape",
                    format!(
                        "{} rooms x {} members, {} senders/room, {} B",
                        r.rooms, r.members, r.senders_per_room, r.payload
                    ),
                ),
                (
                    "load",
                    match (r.rate, r.window) {
                        (Some(rate), _) => format!("{rate} msg/s per sender"),
                        (None, w) => format!("saturating, {} in flight per sender", opt(w)),
                    },
                ),
                (
                    "offered deliveries/s",
                    opt(r.offered_per_sec.map(|v| format!("{v:.0}"))),
                ),
                (
                    "achieved deliveries/s",
                    format!("{:.0}", r.achieved_per_sec),
                ),
                ("loss", format!("{:.4}%", r.loss * 100.0)),
                (
                    "latency p50/p99/p99.9/max",
                    format!(
                        "{} / {} / {} / {} µs",
                        r.latency_us.p50, r.latency_us.p99, r.latency_us.p999, r.latency_us.max
                    ),
                ),
                (
                    "server CPU per delivery",
                    opt(r.server_cpu_us_per_delivery.map(|v| format!("{v:.3} µs"))),
                ),
                (
                    "generator CPU per delivery",
                    opt(r
                        .generator_cpu_us_per_delivery
                        .map(|v| format!("{v:.3} µs"))),
                ),
                (
                    "server RSS idle/joined/end",
                    format!(
                        "{} / {} / {}",
                        mib(r.server_rss_idle),
                        mib(r.server_rss_joined),
                        mib(r.server_rss_end)
                    ),
                ),
            ],
            Report::Idle(r) => vec![
                ("target", r.target.clone()),
                (
                    "connections",
                    format!("{} (rooms of {})", r.connections, r.room_size),
                ),
                (
                    "server RSS idle/joined",
                    format!("{} / {}", mib(r.server_rss_idle), mib(r.server_rss_joined)),
                ),
                (
                    "RSS per connection",
                    opt(r
                        .rss_per_connection
                        .map(|v| format!("{:.2} KiB", v / 1024.0))),
                ),
                ("connect time", format!("{:.2} s", r.connect_seconds)),
            ],
            Report::Storm(r) => vec![
                ("target", r.target.clone()),
                (
                    "connections",
                    format!(
                        "{} ({} joined, {} failed)",
                        r.connections, r.joined, r.failures
                    ),
                ),
                (
                    "time to all joined",
                    format!("{:.3} s", r.seconds_to_all_joined),
                ),
                ("connects/s", format!("{:.0}", r.connects_per_sec)),
            ],
        };
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:>width$}  {v}\n"))
            .collect()
    }

    /// The machine-readable line.
    pub fn json_line(&self) -> String {
        format!(
            "BENCH_JSON {}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }
}
