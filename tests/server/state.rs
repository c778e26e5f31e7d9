//! Shared room state end to end: concurrent writers converge, a late joiner's snapshot equals
//! what everyone holds, compare-and-set detects stale writes (and lets editors retry to a
//! correct total), batching keeps the same result, and oversized state is refused whole.

use parlor_client::protocol::{ClientFrame, ErrorCode, ServerFrame, StateOp, Value};
use parlor_client::{Client, ClientError, StateMirror};

use crate::common::*;

const ROOM: &str = "doc";

fn set(path: &[&str], value: impl Into<Value>) -> StateOp {
    StateOp::Set {
        path: path.iter().map(|k| k.to_string()).collect(),
        value: value.into(),
    }
}

/// Applies every state patch among `frames` to `mirror`.
fn apply_all(mirror: &mut StateMirror, frames: Vec<ServerFrame>) {
    for frame in frames {
        if let ServerFrame::StatePatch(patch) = frame {
            mirror.apply(&patch).expect("patches arrive in order");
        }
    }
}

/// Reads frames until `mirror` reaches `version`.
async fn catch_up(client: &mut Client, mirror: &mut StateMirror, version: u64) {
    let buffered = client.drain_buffered();
    apply_all(mirror, buffered);
    within(10, "state to converge", async {
        while mirror.version < version {
            let frame = client.next_frame().await.expect("frame");
            apply_all(mirror, vec![frame]);
        }
    })
    .await;
}

async fn members(node: &parlor::BackgroundNode, n: usize) -> Vec<(Client, StateMirror)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut client = connect(node).await;
        let joined = client.join_room(ROOM, None).await.unwrap();
        out.push((client, StateMirror::from_joined(&joined)));
    }
    out
}

/// 20 writers, 10 updates each, all at once: each writes its own cells and the same shared
/// cell, so the order the server chose decides the shared cell and everyone must agree on it.
async fn twenty_writers_converge(node: &parlor::BackgroundNode) {
    const WRITERS: usize = 20;
    const UPDATES: usize = 10;
    let writers = members(node, WRITERS).await;
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, (mut client, mirror))| {
            tokio::spawn(async move {
                for u in 0..UPDATES {
                    let ops = vec![
                        set(&["cells", &format!("{w}-{u}")], u as u64),
                        set(&["last"], format!("writer {w} update {u}")),
                    ];
                    client.update_state(ROOM, ops, None).await.unwrap();
                }
                (client, mirror)
            })
        })
        .collect();
    let mut writers = Vec::new();
    for task in tasks {
        writers.push(within(20, "writers", task).await.unwrap());
    }
    let final_version = (WRITERS * UPDATES) as u64;
    for (client, mirror) in &mut writers {
        catch_up(client, mirror, final_version).await;
    }
    let reference = writers[0].1.clone();
    assert_eq!(reference.version, final_version);
    for (_, mirror) in &writers {
        assert_eq!(mirror, &reference);
    }
    let cells = reference.state.get(&["cells".into()]).unwrap();
    assert_eq!(cells.as_map().unwrap().len(), WRITERS * UPDATES);
    // A late joiner's snapshot is exactly what everyone holds.
    let mut late = connect(node).await;
    let joined = late.join_room(ROOM, None).await.unwrap();
    assert_eq!(StateMirror::from_joined(&joined), reference);
    // A compare-and-set against an old version changes nothing.
    let stale = late
        .update_state(ROOM, vec![set(&["last"], "stale")], Some(final_version - 1))
        .await;
    assert_eq!(refused_code(stale), ErrorCode::VersionConflict);
    let again = late.join_room("other", None).await.unwrap();
    assert_eq!(again.version, 0);
    let recheck = connect(node).await.join_room(ROOM, None).await.unwrap();
    assert_eq!(recheck.version, final_version);
    assert_eq!(recheck.state, reference.state);
}

#[tokio::test]
async fn twenty_concurrent_writers_converge_and_a_late_joiner_gets_the_same_state() {
    twenty_writers_converge(&start(test_config())).await;
}

#[tokio::test]
async fn batched_patches_converge_the_same_way() {
    let mut config = test_config();
    config.rooms.state_patch_interval_ms = 20;
    twenty_writers_converge(&start(config)).await;
}

#[tokio::test]
async fn compare_and_set_increments_from_racing_editors_add_up() {
    const EDITORS: usize = 10;
    const INCREMENTS: u64 = 5;
    let node = start(test_config());
    let editors = members(&node, EDITORS).await;
    let tasks: Vec<_> = editors
        .into_iter()
        .map(|(mut client, mut mirror)| {
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..INCREMENTS {
                    loop {
                        apply_all(&mut mirror, client.drain_buffered());
                        let current = mirror
                            .state
                            .get(&["counter".into()])
                            .and_then(|v| v.as_u64())
                            .unwrap_or(0);
                        let op = vec![set(&["counter"], current + 1)];
                        match client.update_state(ROOM, op, Some(mirror.version)).await {
                            Ok(()) => break,
                            Err(ClientError::Refused(e))
                                if e.code == ErrorCode::VersionConflict =>
                            {
                                conflicts += 1;
                                // Someone else wrote first: wait for their patch, then retry.
                                let before = mirror.version;
                                while mirror.version == before {
                                    apply_all(&mut mirror, client.drain_buffered());
                                    if mirror.version == before {
                                        let frame = client.next_frame().await.unwrap();
                                        apply_all(&mut mirror, vec![frame]);
                                    }
                                }
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
                (client, mirror, conflicts)
            })
        })
        .collect();
    let mut total_conflicts = 0;
    // The editors stay connected, so the room (disposed when empty) lives on.
    let mut still_connected = Vec::new();
    for task in tasks {
        let (client, _, conflicts) = within(30, "editors", task).await.unwrap();
        total_conflicts += conflicts;
        still_connected.push(client);
    }
    let joined = connect(&node).await.join_room(ROOM, None).await.unwrap();
    let total = EDITORS as u64 * INCREMENTS;
    assert_eq!(
        joined.state.get(&["counter".into()]),
        Some(Value::from(total))
    );
    // Every accepted write bumped the version once; refused ones did not.
    assert_eq!(joined.version, total);
    println!("{total_conflicts} conflicts retried");
}

#[tokio::test]
async fn oversized_or_invalid_updates_change_nothing() {
    let mut config = test_config();
    config.limits.max_state_bytes = 1024;
    let node = start(config);
    let mut a = connect(&node).await;
    a.join_room(ROOM, None).await.unwrap();
    a.update_state(ROOM, vec![set(&["title"], "hello")], None)
        .await
        .unwrap();
    let big = a
        .update_state(
            ROOM,
            vec![set(&["ok"], 1), set(&["body"], "x".repeat(2000))],
            None,
        )
        .await;
    assert_eq!(refused_code(big), ErrorCode::StateTooLarge);
    let through = a
        .update_state(
            ROOM,
            vec![set(&["ok"], 1), set(&["title", "deeper"], 2)],
            None,
        )
        .await;
    assert_eq!(refused_code(through), ErrorCode::InvalidPath);
    let delete_through = a
        .update_state(
            ROOM,
            vec![
                set(&["ok"], 1),
                StateOp::Delete {
                    path: vec!["title".into(), "deeper".into()],
                },
            ],
            None,
        )
        .await;
    assert_eq!(refused_code(delete_through), ErrorCode::InvalidPath);
    let mut b = connect(&node).await;
    assert_eq!(
        refused_code(b.update_state(ROOM, vec![set(&["x"], 1)], None).await),
        ErrorCode::NotInRoom
    );
    let joined = b.join_room(ROOM, None).await.unwrap();
    assert_eq!(joined.version, 1);
    assert_eq!(joined.state.get(&["ok".into()]), None);
    assert_eq!(
        joined.state.get(&["title".into()]),
        Some(Value::from("hello"))
    );
}

#[tokio::test]
async fn an_array_of_65000_nils_is_refused_by_max_state_values_with_the_defaults() {
    // The attack of issue 12: 65 KB encoded, well under max_state_bytes, but 65,000 values
    // (2.6 MB decoded). A 64x64 grid keyed by position still fits.
    let node = start(test_config());
    let mut a = connect(&node).await;
    a.join_room(ROOM, None).await.unwrap();
    let attack = vec![set(&["a"], Value::Array(vec![Value::Nil; 65_000]))];
    let frame_bytes = parlor_client::protocol::encode_client(&ClientFrame::UpdateState {
        reference: Some(1),
        room: ROOM.into(),
        ops: attack.clone(),
        if_version: None,
    })
    .len();
    assert!(
        frame_bytes <= 65_536,
        "the attack fits one frame: {frame_bytes}"
    );
    let refused = a.update_state(ROOM, attack, None).await;
    assert_eq!(refused_code(refused), ErrorCode::StateTooLarge);
    let grid = Value::Map(
        (0..64 * 64)
            .map(|i| {
                (
                    Value::from(format!("{},{}", i % 64, i / 64)),
                    Value::from(i % 7),
                )
            })
            .collect(),
    );
    a.update_state(ROOM, vec![set(&["grid"], grid)], None)
        .await
        .expect("a 64x64 grid fits the defaults");
    let mut b = connect(&node).await;
    let joined = b.join_room(ROOM, None).await.unwrap();
    assert_eq!(joined.version, 1, "the refused update used no version");
    assert_eq!(joined.state.get(&["a".into()]), None);
    assert_eq!(joined.state.value_count(), 3 + 2 * 64 * 64);
}
