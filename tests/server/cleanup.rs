//! Disconnect cleanup: however a connection ends, its rooms forget it and the others are told.

use std::collections::HashMap;

use futures_util::future::join_all;
use parlor_client::protocol::{LeaveReason, PresenceStatus, ServerFrame, SessionId};

use crate::common::*;

const ROOMS: usize = 50;
const PER_ROOM: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_leave_every_way_and_nothing_remains() {
    // Clients do not read while the 500 are set up, so the timeout must outlast the setup.
    let mut config = test_config();
    config.session.heartbeat_interval_ms = 500;
    config.session.client_timeout_ms = 4_000;
    let node = start(config);
    let mut observers = Vec::new();
    let mut clean = Vec::new();
    let mut resets = Vec::new();
    let mut fins = Vec::new();
    let mut silent = Vec::new();
    let mut expected: Vec<HashMap<SessionId, LeaveReason>> = Vec::new();
    for room in 0..ROOMS {
        let name = format!("room-{room}");
        let mut gone = HashMap::new();
        // Connect a room's members at once, then join them in seat order.
        let members = join_all((0..PER_ROOM).map(|_| connect(&node))).await;
        for (seat, mut client) in members.into_iter().enumerate() {
            client.join(&name).await.unwrap();
            let id = client.session_id();
            match seat {
                0 => observers.push(client),
                1..=5 => {
                    gone.insert(id, LeaveReason::Closed);
                    clean.push(client);
                }
                6 | 7 => {
                    gone.insert(id, LeaveReason::Dropped);
                    resets.push(client);
                }
                8 => {
                    gone.insert(id, LeaveReason::Dropped);
                    fins.push(client);
                }
                _ => {
                    gone.insert(id, LeaveReason::Timeout);
                    silent.push(client);
                }
            }
        }
        expected.push(gone);
    }
    assert_eq!(
        health(&node).await,
        ((ROOMS * PER_ROOM) as u64, ROOMS as u64)
    );

    // Half close with a close frame, the rest drop TCP (reset or FIN) or go silent.
    join_all(clean.into_iter().map(|c| c.close())).await;
    resets.into_iter().for_each(|c| c.abort());
    drop(fins);
    let silent_guard = silent; // kept open, never read: no pongs, no frames

    let watchers = observers
        .into_iter()
        .zip(expected)
        .map(|(mut observer, gone)| {
            tokio::spawn(async move {
                let mut seen = HashMap::new();
                within(15, "every peer's left", async {
                    while seen.len() < gone.len() {
                        if let ServerFrame::Presence(p) = observer.next_frame().await.unwrap() {
                            if p.status == PresenceStatus::Left {
                                assert!(
                                    seen.insert(p.session, p.reason.unwrap()).is_none(),
                                    "left twice"
                                );
                            }
                        }
                    }
                })
                .await;
                assert_eq!(seen, gone);
                observer.close().await.unwrap();
            })
        });
    for watcher in join_all(watchers).await {
        watcher.unwrap();
    }
    wait_health(&node, (0, 0), 10).await;
    drop(silent_guard);
}
