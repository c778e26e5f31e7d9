//! A few-second smoke run of every scenario against an in-process Parlor node, so the load
//! generator keeps working. The full suite (`bench/run`) is not a test.

use std::time::Duration;

use parlor_bench::scenario::{self, FanoutSpec, Target};
use parlor_bench::wire::Proto;

fn node() -> (parlor::BackgroundNode, Target) {
    let mut config = parlor::Config::embedded().unwrap();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.workers = 1;
    config.rate_limits.frames_per_second = 0;
    config.rate_limits.bytes_per_second = 0;
    let node = parlor::spawn(config).unwrap();
    let target = Target {
        name: "parlor".into(),
        proto: Proto::Parlor,
        addrs: vec![node.addr.to_string()],
        // The node runs in this process.
        server_pids: vec![std::process::id()],
        spread: Default::default(),
    };
    (node, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_at_a_rate_delivers_everything_and_measures_it() {
    let (_node, target) = node();
    let spec = FanoutSpec {
        rooms: 2,
        members: 5,
        senders: 5,
        rate: Some(20.0),
        window: 4,
        payload: 64,
        warmup: Duration::from_millis(300),
        duration: Duration::from_millis(1500),
        connect_concurrency: 8,
    };
    let report = scenario::fanout(&target, &spec).await.unwrap();
    // 10 senders × 20 msg/s × 4 recipients = 800 deliveries/s offered.
    assert_eq!(report.offered_per_sec, Some(800.0));
    assert!(report.achieved_per_sec > 400.0, "{report:?}");
    assert_eq!(report.loss, 0.0, "{report:?}");
    assert!(
        report.latency_us.count > 500 && report.latency_us.p50 > 0,
        "{report:?}"
    );
    assert!(report.server_cpu_seconds.is_some() && report.server_rss_joined.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_idle_and_storm_run() {
    let (_node, target) = node();
    let spec = FanoutSpec {
        rooms: 1,
        members: 4,
        senders: 4,
        rate: None,
        window: 2,
        payload: 64,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(800),
        connect_concurrency: 4,
    };
    let saturated = scenario::fanout(&target, &spec).await.unwrap();
    assert!(saturated.achieved_per_sec > 1000.0, "{saturated:?}");
    assert_eq!(saturated.loss, 0.0, "{saturated:?}");

    let idle = scenario::idle(&target, 20, 5, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(idle.connections, 20);
    assert!(idle.rss_per_connection.is_some());

    let storm = scenario::storm(&target, 50, 10).await.unwrap();
    assert_eq!((storm.joined, storm.failures), (50, 0));
}
