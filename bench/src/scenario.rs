//! The scenarios: idle connections (memory), fan-out at a fixed rate or saturating (throughput,
//! loss, latency, CPU), and a connection storm. Each client is one task that reads and, if it
//! is a sender, sends on the same connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use crate::procfs;
use crate::report::{FanoutReport, IdleReport, StormReport};
use crate::wire::{Proto, WireError, Ws};

/// A server under test: one address, or several (a cluster's nodes), and the processes whose
/// CPU time and memory count as the server's (a cluster's nodes and its Redis).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub proto: Proto,
    /// Client `i` connects to `addrs[i % addrs.len()]`.
    pub addrs: Vec<String>,
    pub server_pids: Vec<u32>,
    pub spread: Spread,
}

/// How clients are spread over several addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Spread {
    /// Client after client: every room has members on every node.
    #[default]
    Clients,
    /// Room by room: all of a room's members on one node.
    Rooms,
}

impl Target {
    /// The sum over the server's processes, if every one of them could be read.
    fn server_cpu(&self) -> Option<Duration> {
        self.sum(procfs::cpu_time)
    }
    fn server_rss(&self) -> Option<u64> {
        self.sum(procfs::rss_bytes)
    }
    fn sum<T: std::iter::Sum<T>>(&self, read: impl Fn(u32) -> Option<T>) -> Option<T> {
        if self.server_pids.is_empty() {
            return None;
        }
        self.server_pids.iter().map(|pid| read(*pid)).sum()
    }
    fn addr(&self, client: usize, room: &str) -> String {
        let slot = match self.spread {
            Spread::Clients => client,
            Spread::Rooms => room
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(client),
        };
        self.addrs[slot % self.addrs.len()].clone()
    }
}

/// Bytes of the payload's header: send time (ns since the run's epoch) and sender index.
const STAMP_BYTES: usize = 12;

#[derive(Clone, Debug)]
pub struct FanoutSpec {
    pub rooms: usize,
    pub members: usize,
    /// Senders per room (the first members of each room).
    pub senders: usize,
    /// Messages per second per sender; `None` saturates with `window` messages in flight.
    pub rate: Option<f64>,
    pub window: usize,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub connect_concurrency: usize,
}

impl FanoutSpec {
    /// Recipients per message: saturation counts the sender's own echo (it paces the window).
    fn fanout(&self) -> u64 {
        if self.rate.is_some() {
            self.members as u64 - 1
        } else {
            self.members as u64
        }
    }
}

/// Counters shared by every client task.
struct Shared {
    epoch: Instant,
    /// The measurement window, in ns since `epoch` (end is u64::MAX until it closes).
    window_start: AtomicU64,
    window_end: AtomicU64,
    sending: AtomicBool,
    /// Sends whose stamp is inside the window.
    sent_in_window: AtomicU64,
    /// Deliveries of messages sent inside the window (whenever they arrive).
    delivered_of_window: AtomicU64,
    /// Deliveries that arrived inside the window (for CPU per delivery).
    arrived_in_window: AtomicU64,
    /// All deliveries, for progress.
    delivered: AtomicU64,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            sending: AtomicBool::new(true),
            sent_in_window: AtomicU64::new(0),
            delivered_of_window: AtomicU64::new(0),
            arrived_in_window: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        })
    }
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start.load(Ordering::Relaxed)
            && ns < self.window_end.load(Ordering::Relaxed)
    }
}

/// What one client does besides reading.
#[derive(Clone)]
struct Role {
    index: u32,
    room: String,
    /// Sends at this many messages per second, phase-shifted by `phase`.
    rate: Option<f64>,
    phase: f64,
    /// Saturating sender: keeps this many of its own messages in flight.
    window: Option<usize>,
    payload: usize,
}

fn room_name(room: usize) -> String {
    format!("bench-{room}")
}

/// Connects `rooms.len()` clients, each joining its room, `concurrency` at a time, in order.
async fn connect_all(
    target: &Target,
    rooms: Vec<String>,
    concurrency: usize,
    progress: &ProgressBar,
) -> Result<(Vec<Ws>, Duration), WireError> {
    let started = Instant::now();
    progress.set_length(rooms.len() as u64);
    let proto = target.proto;
    let clients: Vec<Result<Ws, WireError>> = stream::iter(rooms.into_iter().enumerate())
        .map(|(i, room)| {
            let addr = target.addr(i, &room);
            let progress = progress.clone();
            async move {
                let mut ws = proto.connect(&addr).await?;
                proto.join(&mut ws, &room).await?;
                progress.inc(1);
                Ok(ws)
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let clients = clients.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((clients, started.elapsed()))
}

fn progress_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// One client: reads deliveries (recording latency) and sends according to its role.
async fn run_client(
    mut ws: Ws,
    proto: Proto,
    role: Role,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut latency = new_histogram();
    let mut ticker = role.rate.map(|rate| {
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now() + period.mul_f64(role.phase);
        let mut interval = tokio::time::interval_at(start, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        interval
    });
    let (mut sent, mut echoed) = (0u64, 0u64);
    let mut seq = 0u32;
    loop {
        // A saturating sender tops its window up before waiting for anything.
        if let Some(window) = role.window {
            while shared.sending.load(Ordering::Relaxed) && sent - echoed < window as u64 {
                if send_one(&mut ws, proto, &role, &shared, &mut seq, true)
                    .await
                    .is_err()
                {
                    return latency;
                }
                sent += 1;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            message = ws.next() => match message {
                Some(Ok(Message::Binary(frame))) => {
                    let Some(payload) = proto.delivery(&frame) else { continue };
                    let Some((stamp, sender)) = read_stamp(payload) else { continue };
                    let now = shared.now_ns();
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    if shared.in_window(now) {
                        shared.arrived_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                    if shared.in_window(stamp) {
                        shared.delivered_of_window.fetch_add(1, Ordering::Relaxed);
                        let _ = latency.record(now.saturating_sub(stamp) / 1_000);
                    }
                    if sender == role.index {
                        echoed += 1;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Some(answer) = proto.answer_text(&text) {
                        if ws.send(answer).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = tick(&mut ticker) => {
                if shared.sending.load(Ordering::Relaxed)
                    && send_one(&mut ws, proto, &role, &shared, &mut seq, false).await.is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = ws.close(None).await;
    latency
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send_one(
    ws: &mut Ws,
    proto: Proto,
    role: &Role,
    shared: &Shared,
    seq: &mut u32,
    echo: bool,
) -> Result<(), WireError> {
    let stamp = shared.now_ns();
    let mut payload = vec![0u8; role.payload.max(STAMP_BYTES)];
    payload[..8].copy_from_slice(&stamp.to_le_bytes());
    payload[8..12].copy_from_slice(&role.index.to_le_bytes());
    *seq = seq.wrapping_add(1);
    if shared.in_window(stamp) {
        shared.sent_in_window.fetch_add(1, Ordering::Relaxed);
    }
    ws.send(Message::Binary(proto.emit(&role.room, payload, echo)))
        .await?;
    Ok(())
}

fn read_stamp(payload: &[u8]) -> Option<(u64, u32)> {
    let stamp = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let sender = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?);
    Some((stamp, sender))
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 100 s, 3 significant figures.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant, valid histogram bounds")
}

/// Starts one task per client, with the role `role_of(index)` gives it.
fn spawn_clients(
    clients: Vec<Ws>,
    proto: Proto,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    role_of: impl Fn(usize) -> Role,
) -> Vec<tokio::task::JoinHandle<Histogram<u64>>> {
    clients
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            tokio::spawn(run_client(
                ws,
                proto,
                role_of(i),
                Arc::clone(shared),
                stop.clone(),
            ))
        })
        .collect()
}

/// Runs the fan-out scenario against `target`.
pub async fn fanout(target: &Target, spec: &FanoutSpec) -> Result<FanoutReport, WireError> {
    let rss_idle = target.server_rss();
    let rooms: Vec<String> = (0..spec.rooms)
        .flat_map(|r| std::iter::repeat_n(room_name(r), spec.members))
        .collect();
    let bar = progress_bar("connect");
    let (clients, connect_time) =
        connect_all(target, rooms, spec.connect_concurrency, &bar).await?;
    bar.finish_and_clear();
    let rss_joined = target.server_rss();

    let shared = Shared::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let golden = 0.618_033_988_75_f64;
    let tasks = spawn_clients(clients, target.proto, &shared, &stop_rx, |i| {
        let is_sender = i % spec.members < spec.senders;
        Role {
            index: i as u32,
            room: room_name(i / spec.members),
            rate: spec.rate.filter(|_| is_sender),
            phase: (i as f64 * golden).fract(),
            window: (spec.rate.is_none() && is_sender).then_some(spec.window),
            payload: spec.payload,
        }
    });

    tokio::time::sleep(spec.warmup).await;
    let cpu_start = (target.server_cpu(), procfs::cpu_time(std::process::id()));
    shared.window_start.store(shared.now_ns(), Ordering::SeqCst);
    let measure = progress_bar("measure");
    measure.set_length(spec.duration.as_millis() as u64 / 100);
    let started = Instant::now();
    while started.elapsed() < spec.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        measure.set_position((started.elapsed().as_millis() / 100) as u64);
        measure.set_message(format!(
            "{:.0} deliveries/s",
            shared.arrived_in_window.load(Ordering::Relaxed) as f64 / secs
        ));
    }
    shared.window_end.store(shared.now_ns(), Ordering::SeqCst);
    let window = started.elapsed();
    let cpu_end = (target.server_cpu(), procfs::cpu_time(std::process::id()));
    measure.finish_and_clear();
    shared.sending.store(false, Ordering::SeqCst);

    // Drain: wait until deliveries stop arriving (at most 5 s).
    let drain_started = Instant::now();
    let mut last = shared.delivered.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now == last || drain_started.elapsed() > Duration::from_secs(5) {
            break;
        }
        last = now;
    }
    let rss_end = target.server_rss();
    let _ = stop_tx.send(true);
    let mut latency = new_histogram();
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = latency.add(&h);
        }
    }

    let sent = shared.sent_in_window.load(Ordering::Relaxed);
    let expected = sent * spec.fanout();
    let delivered = shared.delivered_of_window.load(Ordering::Relaxed);
    let arrived = shared.arrived_in_window.load(Ordering::Relaxed);
    let secs = window.as_secs_f64();
    let cpu = |(a, b): (Option<Duration>, Option<Duration>)| {
        a.zip(b).map(|(a, b)| b.saturating_sub(a).as_secs_f64())
    };
    let server_cpu = cpu((cpu_start.0, cpu_end.0));
    let generator_cpu = cpu((cpu_start.1, cpu_end.1));
    Ok(FanoutReport {
        target: target.name.clone(),
        rooms: spec.rooms,
        members: spec.members,
        senders_per_room: spec.senders,
        rate: spec.rate,
        window: spec.rate.is_none().then_some(spec.window),
        payload: spec.payload,
        seconds: secs,
        offered_per_sec: spec
            .rate
            .map(|r| r * (spec.rooms * spec.senders) as f64 * spec.fanout() as f64),
        sent_per_sec: sent as f64 / secs,
        achieved_per_sec: delivered as f64 / secs,
        loss: if expected == 0 {
            0.0
        } else {
            1.0 - delivered as f64 / expected as f64
        },
        latency_us: crate::report::Percentiles::of(&latency),
        server_cpu_seconds: server_cpu,
        generator_cpu_seconds: generator_cpu,
        server_cpu_us_per_delivery: server_cpu
            .filter(|_| arrived > 0)
            .map(|c| c * 1e6 / arrived as f64),
        generator_cpu_us_per_delivery: generator_cpu
            .filter(|_| arrived > 0)
            .map(|c| c * 1e6 / arrived as f64),
        connect_seconds: connect_time.as_secs_f64(),
        server_rss_idle: rss_idle,
        server_rss_joined: rss_joined,
        server_rss_end: rss_end,
    })
}

/// Opens `connections` idle clients in rooms of `room_size` and measures the server's memory.
pub async fn idle(
    target: &Target,
    connections: usize,
    room_size: usize,
    settle: Duration,
) -> Result<IdleReport, WireError> {
    let rss_idle = target.server_rss();
    let rooms: Vec<String> = (0..connections)
        .map(|i| room_name(i / room_size.max(1)))
        .collect();
    let bar = progress_bar("connect");
    let (clients, connect_time) = connect_all(target, rooms, 256, &bar).await?;
    bar.finish_and_clear();
    // Keep reading (presence, pings) so nothing waits in the server's buffers.
    let shared = Shared::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = spawn_clients(clients, target.proto, &shared, &stop_rx, |i| Role {
        index: i as u32,
        room: String::new(),
        rate: None,
        phase: 0.0,
        window: None,
        payload: 0,
    });
    tokio::time::sleep(settle).await;
    let rss_joined = target.server_rss();
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(IdleReport {
        target: target.name.clone(),
        connections,
        room_size,
        connect_seconds: connect_time.as_secs_f64(),
        server_rss_idle: rss_idle,
        server_rss_joined: rss_joined,
        rss_per_connection: rss_idle
            .zip(rss_joined)
            .map(|(a, b)| b.saturating_sub(a) as f64 / connections as f64),
    })
}

/// Starts `connections` clients at once, each connecting and joining; measures how fast all
/// are in.
pub async fn storm(
    target: &Target,
    connections: usize,
    room_size: usize,
) -> Result<StormReport, WireError> {
    let started = Instant::now();
    let bar = progress_bar("storm");
    bar.set_length(connections as u64);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let room = room_name(i / room_size.max(1));
            let (proto, addr, bar) = (target.proto, target.addr(i, &room), bar.clone());
            tokio::spawn(async move {
                let mut ws = proto.connect(&addr).await?;
                proto.join(&mut ws, &room).await?;
                bar.inc(1);
                Ok::<_, WireError>((ws, started.elapsed()))
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(connections);
    let mut failures = 0;
    let mut last = Duration::ZERO;
    for task in tasks {
        match task.await {
            Ok(Ok((ws, at))) => {
                last = last.max(at);
                clients.push(ws);
            }
            _ => failures += 1,
        }
    }
    bar.finish_and_clear();
    let joined = clients.len();
    for mut ws in clients {
        let _ = ws.close(None).await;
    }
    Ok(StormReport {
        target: target.name.clone(),
        connections,
        joined,
        failures,
        seconds_to_all_joined: last.as_secs_f64(),
        connects_per_sec: joined as f64 / last.as_secs_f64().max(1e-9),
    })
}
