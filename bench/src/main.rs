//! The `parlor-bench` command: runs one scenario against one server and prints a table and a
//! `BENCH_JSON` line.

use std::time::Duration;

use clap::{Parser, Subcommand};
use parlor_bench::report::Report;
use parlor_bench::scenario::{self, FanoutSpec, Spread, Target};
use parlor_bench::wire::Proto;

#[derive(Parser)]
#[command(about = "Load generator for Parlor, the raw floor and Socket.IO")]
struct Args {
    /// Name shown in reports.
    #[arg(long, default_value = "parlor")]
    name: String,
    /// The protocol the server speaks.
    #[arg(long, value_enum, default_value = "parlor")]
    proto: Proto,
    /// host:port of the server; several, comma-separated, for a cluster (clients are spread
    /// over them in turn, so every room has members on every node).
    #[arg(long, default_value = "127.0.0.1:8080", value_delimiter = ',')]
    addr: Vec<String>,
    /// The server's process ids (a cluster's nodes and Redis), comma-separated, to read their
    /// CPU time and memory from /proc; figures are their sums.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// With several addresses: spread clients one by one (every room on every node) or room by
    /// room (each room on one node).
    #[arg(long, value_enum, default_value = "clients")]
    spread: Spread,
    /// Worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Rooms of members, some of whom send at a rate (or saturate); measures deliveries.
    Fanout {
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 50)]
        members: usize,
        /// Senders per room.
        #[arg(long, default_value_t = 50)]
        senders: usize,
        /// Messages per second per sender.
        #[arg(long, conflicts_with = "saturate")]
        rate: Option<f64>,
        /// Send as fast as each sender's window allows instead of at a rate.
        #[arg(long)]
        saturate: bool,
        /// Messages in flight per saturating sender.
        #[arg(long, default_value_t = 4)]
        window: usize,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 128)]
        connect_concurrency: usize,
    },
    /// Idle connections in rooms; measures the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        room_size: usize,
        /// Seconds to wait after all joined before measuring.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
    /// All clients connect and join at once.
    Storm {
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        room_size: usize,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("parlor-bench: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let target = Target {
        name: args.name,
        proto: args.proto,
        addrs: args.addr,
        server_pids: args.server_pid,
        spread: args.spread,
    };
    let result = runtime.block_on(async {
        match args.scenario {
            Scenario::Fanout {
                rooms,
                members,
                senders,
                rate,
                saturate,
                window,
                payload,
                warmup,
                duration,
                connect_concurrency,
            } => {
                let rate = if saturate {
                    None
                } else {
                    Some(rate.unwrap_or(6.0))
                };
                let spec = FanoutSpec {
                    rooms,
                    members,
                    senders: senders.min(members),
                    rate,
                    window,
                    payload,
                    warmup: Duration::from_secs_f64(warmup),
                    duration: Duration::from_secs_f64(duration),
                    connect_concurrency,
                };
                scenario::fanout(&target, &spec).await.map(Report::Fanout)
            }
            Scenario::Idle {
                connections,
                room_size,
                settle,
            } => scenario::idle(
                &target,
                connections,
                room_size,
                Duration::from_secs_f64(settle),
            )
            .await
            .map(Report::Idle),
            Scenario::Storm {
                connections,
                room_size,
            } => scenario::storm(&target, connections, room_size)
                .await
                .map(Report::Storm),
        }
    });
    match result {
        Ok(report) => {
            print!("{}", report.table());
            println!("{}", report.json_line());
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("parlor-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
