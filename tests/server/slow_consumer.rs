//! Slow consumers: a client that stops reading while its room broadcasts at full speed is
//! evicted, server memory stays bounded, and the others keep receiving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use parlor_client::emit_frame;
use parlor_client::protocol::{LeaveReason, PresenceStatus, ServerFrame, Value};

use crate::common::*;

/// Resident set size of this process (the node runs inside it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

const PAYLOAD: usize = 4 * 1024;
const EMITS: usize = 25_000; // 100 MB offered to each reader
const WINDOW: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_is_evicted_and_memory_stays_bounded() {
    let mut config = test_config();
    config = with_budget(config, 256 * 1024);
    config.session.client_timeout_ms = 60_000; // only the budget may evict here
    config.session.heartbeat_interval_ms = 1_000;
    let node = start(config);
    let (mut sender, mut slow, mut reader) = (
        connect(&node).await,
        connect(&node).await,
        connect(&node).await,
    );
    reader.join("r").await.unwrap();
    slow.join("r").await.unwrap();
    sender.join("r").await.unwrap();
    let slow_id = slow.session_id();

    // The sender runs as fast as an honest reader can follow: at most WINDOW events ahead of
    // it (an unpaced flood would make the honest reader a slow consumer too, rightly).
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let (counter, notify) = (Arc::clone(&received), Arc::clone(&progress));
    let reading = tokio::spawn(async move {
        let mut evicted = false;
        loop {
            match reader.next_frame().await.unwrap() {
                ServerFrame::Event(e) if e.event == "done" => return (evicted, reader),
                ServerFrame::Event(_) => {
                    counter.fetch_add(1, Ordering::Release);
                    notify.notify_one();
                }
                ServerFrame::Presence(p)
                    if p.session == slow_id && p.status == PresenceStatus::Left =>
                {
                    assert_eq!(p.reason, Some(LeaveReason::SlowConsumer));
                    evicted = true;
                }
                _ => {}
            }
        }
    });

    let peak = Arc::new(AtomicU64::new(0));
    let sampling = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let before = rss_bytes();
    let (mut tx, _sender_rx) = sender.split();
    let payload = parlor_client::protocol::encode_client(&emit_frame(
        "r",
        "tick",
        Value::Binary(vec![7; PAYLOAD]),
        false,
    ));
    for sent in 0..EMITS as u64 {
        while sent >= received.load(Ordering::Acquire) + WINDOW {
            progress.notified().await;
        }
        tx.send_raw(payload.clone()).await.unwrap();
    }
    // The slow client never read a byte; let the registry catch up, then mark the end.
    within(20, "the slow consumer's eviction", async {
        while health(&node).await.0 != 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tx.send(emit_frame("r", "done", Value::Nil, false))
        .await
        .unwrap();
    let (evicted, _reader) = within(30, "the reader to finish", reading).await.unwrap();
    sampling.abort();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    let delivered = received.load(Ordering::Relaxed);
    eprintln!(
        "slow consumer: RSS growth {} KiB, reader got {delivered} events",
        growth / 1024
    );

    assert!(evicted, "the reader was told of the eviction");
    assert!(
        delivered > (EMITS as u64) / 2,
        "the reader kept receiving ({delivered} events)"
    );
    // Without the budget the node would hold most of the ~100 MB offered to the stalled reader.
    assert!(
        growth < 48 * 1024 * 1024,
        "RSS grew by {} MiB",
        growth / (1024 * 1024)
    );
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_slow_consumer_gives_its_connection_slot_back() {
    let mut config = test_config();
    config = with_budget(config, 128 * 1024);
    config.session.client_timeout_ms = 2_000;
    config.session.heartbeat_interval_ms = 500;
    config.limits.max_connections = 2;
    let node = start(config);
    let (mut sender, mut slow) = (connect(&node).await, connect(&node).await);
    slow.join("r").await.unwrap();
    sender.join("r").await.unwrap();
    let (mut tx, mut rx) = sender.split();
    tokio::spawn(async move { while rx.next_frame().await.is_ok() {} });
    let payload = parlor_client::protocol::encode_client(&emit_frame(
        "r",
        "t",
        Value::Binary(vec![1; 8192]),
        false,
    ));
    within(20, "the eviction", async {
        while health(&node).await.0 != 1 {
            for _ in 0..100 {
                tx.send_raw(payload.clone()).await.unwrap();
            }
        }
    })
    .await;
    // Both slots were taken; a third client gets in only once the evicted connection is gone
    // (the kernel's TCP_USER_TIMEOUT, set to client_timeout, is the backstop for a peer
    // that never reads again).
    within(10, "the evicted connection's slot", async {
        while parlor_client::Client::connect(&node.ws_url())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_bad_frames_without_reading_is_cut_off() {
    // Each 1-byte bad frame earns a ~70-byte error. A client that never reads fills its socket,
    // which freezes its session (no more replies are produced), and actix-http then drops the
    // connection once 128 KiB of its input wait unread: the room sees it leave as `dropped`.
    let mut config = test_config();
    config.session.client_timeout_ms = 60_000; // the heartbeat must not be what ends it
    config.session.heartbeat_interval_ms = 1_000;
    let node = start(config);
    let (mut watcher, mut flooder) = (connect(&node).await, connect(&node).await);
    watcher.join("r").await.unwrap();
    flooder.join("r").await.unwrap();
    let flooder_id = flooder.session_id();
    let flood = tokio::spawn(async move {
        let garbage = parlor_client::tungstenite::Message::Binary(vec![0xc1].into());
        for _ in 0..400_000 {
            if flooder.send_message(garbage.clone()).await.is_err() {
                return;
            }
        }
    });
    let left = within(60, "the flooder to be cut off", async {
        loop {
            if let ServerFrame::Presence(p) = watcher.next_frame().await.unwrap() {
                if p.session == flooder_id && p.status == PresenceStatus::Left {
                    return p.reason;
                }
            }
        }
    })
    .await;
    assert_eq!(left, Some(LeaveReason::Dropped));
    wait_health(&node, (1, 1), 10).await;
    assert_usable(&mut watcher, "after-flood").await;
    flood.abort();
}
