//! Shared state across nodes: concurrent writers on three nodes are serialised by Redis, so
//! every member ends with the same state at the same version, and every patch arrives in the
//! same order everywhere.

use parlor_client::protocol::{ErrorCode, ServerFrame, SessionId, StateOp, Value};
use parlor_client::{ClientError, StateMirror};

use crate::harness::{cluster, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_writers_on_three_nodes_converge() {
    let (redis, nodes) = cluster(3, &[]).await;
    let mut clients = Vec::new();
    let mut mirrors = Vec::new();
    for n in 0..30 {
        let mut client = nodes[n % 3].client().await;
        let joined = client.join_room("doc", None).await.expect("join");
        mirrors.push(StateMirror::from_joined(&joined));
        clients.push(client);
    }
    // Each writer sets its own key and bumps a shared one, five times, all at once.
    let mut tasks = Vec::new();
    for (n, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                client
                    .update_state(
                        "doc",
                        vec![
                            StateOp::Set {
                                path: vec![format!("w{n}")],
                                value: Value::from(round),
                            },
                            StateOp::Set {
                                path: vec!["last".into()],
                                value: Value::from(n),
                            },
                        ],
                        None,
                    )
                    .await
                    .expect("write");
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(within(60, "the writers", task).await.expect("task"));
    }
    // 150 writes: every mirror reaches version 150 with the same patches in the same order.
    let mut orders = Vec::new();
    for (client, mirror) in clients.iter_mut().zip(&mut mirrors) {
        let mut order = Vec::new();
        within(20, "every patch", async {
            while mirror.version < 150 {
                for frame in client.drain_buffered() {
                    apply(mirror, &frame, &mut order);
                }
                if mirror.version >= 150 {
                    break;
                }
                let frame = client.next_frame().await.expect("frame");
                apply(mirror, &frame, &mut order);
            }
        })
        .await;
        assert_eq!(mirror.version, 150);
        orders.push(order);
    }
    let first = mirrors[0].state.clone();
    for mirror in &mirrors {
        assert_eq!(&mirror.state, &first, "every member holds the same state");
    }
    for n in 0..30 {
        assert_eq!(first.get(&[format!("w{n}")]), Some(Value::from(4)));
    }
    for order in &orders[1..] {
        assert_eq!(
            order, &orders[0],
            "patches arrive in one order on every node"
        );
    }
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refuses_a_write_under_a_lease_that_moved_on() {
    let (redis, nodes) = cluster(1, &[]).await;
    let mut member = nodes[0].client().await;
    member.join_room("doc", None).await.expect("join");
    let keys = parlor::cluster::Keys::new("parlor:").room("doc");
    let epoch: u64 = redis
        .cli(&["HGET", &keys.room, "epoch"])
        .trim()
        .parse()
        .expect("an epoch");
    let stranger = SessionId::new_random().to_string();
    #[derive(serde::Serialize)]
    struct Commit<'a> {
        node: &'a str,
        epoch: u64,
        keep: u64,
        head: &'a str,
        add: Vec<String>,
    }
    let commit = |node: &str, epoch: u64| {
        let args = rmp_serde::to_vec_named(&Commit {
            node,
            epoch,
            keep: 100,
            head: &keys.channel(""),
            add: vec![stranger.clone()],
        })
        .expect("encode");
        // On a Redis Cluster, sent to the node of the room's slot.
        redis.room_fcall::<Vec<redis::Value>>("parlor_commit", &keys, &[&args])
    };
    let fenced = |reply: Vec<redis::Value>| matches!(reply.first(), Some(redis::Value::BulkString(tag)) if tag == b"fenced");
    // An older epoch of the home itself, and another node with the current one: both fenced.
    assert!(fenced(commit("a", epoch - 1)));
    assert!(fenced(commit("z", epoch)));
    assert!(fenced(commit("a", epoch + 1)));
    let members = redis.cli(&["SMEMBERS", &keys.members]);
    assert!(!members.contains(&stranger), "{members}");
    // The room goes on as before.
    member
        .update_state(
            "doc",
            vec![StateOp::Set {
                path: vec!["k".into()],
                value: Value::from(1),
            }],
            Some(0),
        )
        .await
        .expect("write at version 0");
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_on_a_stale_copy_is_tried_on_the_real_state() {
    let (redis, nodes) = cluster(2, &[]).await;
    let mut here = nodes[0].client().await;
    let mut there = nodes[1].client().await;
    here.join_room("doc", None).await.expect("join");
    there.join_room("doc", None).await.expect("join");
    let set = |path: &[&str], value: Value| StateOp::Set {
        path: path.iter().map(|k| k.to_string()).collect(),
        value,
    };
    // Node a last saw `a` as a number; node b then makes it a map.
    here.update_state("doc", vec![set(&["a"], Value::from(1))], None)
        .await
        .expect("a = 1");
    there
        .update_state("doc", vec![set(&["a"], Value::Map(Vec::new()))], None)
        .await
        .expect("a = {}");
    // Through a number the path would be invalid; through the map Redis holds it is not.
    here.update_state("doc", vec![set(&["a", "b"], Value::from(2))], None)
        .await
        .expect("a.b = 2, against the state as it is");
    let joined = nodes[1]
        .client()
        .await
        .join_room("doc", None)
        .await
        .expect("join");
    assert_eq!(joined.version, 3);
    assert_eq!(
        joined.state.get(&["a".to_string(), "b".to_string()]),
        Some(Value::from(2))
    );
    redis.assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_bounds_hold_on_a_cluster_against_the_real_state() {
    let (redis, nodes) = cluster(2, &[("PARLOR_LIMITS_MAX_STATE_VALUES", "100")]).await;
    let mut here = nodes[0].client().await;
    let mut there = nodes[1].client().await;
    here.join_room("doc", None).await.expect("join");
    there.join_room("doc", None).await.expect("join");
    let set = |path: &[&str], value: Value| StateOp::Set {
        path: path.iter().map(|k| k.to_string()).collect(),
        value,
    };
    let nils = |n| Value::Array(vec![Value::Nil; n]);
    here.update_state("doc", vec![set(&["a"], Value::from(1))], None)
        .await
        .expect("a = 1");
    // 1 + "a", 1 + "big", its array and 90 nils: 95 values.
    there
        .update_state("doc", vec![set(&["big"], nils(90))], None)
        .await
        .expect("big");
    // Twelve more values fit what node a may still hold, not the state Redis has.
    let refused = here
        .update_state("doc", vec![set(&["c"], nils(10))], None)
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused(e)) if e.code == ErrorCode::StateTooLarge),
        "{refused:?}"
    );
    let refused = here
        .update_state("doc", vec![set(&["d"], nils(65_000))], None)
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused(e)) if e.code == ErrorCode::StateTooLarge),
        "{refused:?}"
    );
    let refused = there
        .update_state(
            "doc",
            vec![StateOp::Delete {
                path: vec!["a".into(), "x".into()],
            }],
            None,
        )
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused(e)) if e.code == ErrorCode::InvalidPath),
        "{refused:?}"
    );
    let joined = nodes[1]
        .client()
        .await
        .join_room("doc", None)
        .await
        .expect("join");
    assert_eq!(joined.version, 2, "no refused write used a version");
    assert_eq!(joined.state.value_count(), 95);
    redis.assert_consistent();
}

fn apply(mirror: &mut StateMirror, frame: &ServerFrame, order: &mut Vec<u64>) {
    if let ServerFrame::StatePatch(patch) = frame {
        if patch
            .patches
            .first()
            .is_some_and(|p| p.version > mirror.version)
        {
            order.extend(patch.patches.iter().map(|p| p.version));
            mirror.apply(patch).expect("patches apply in order");
        }
    }
}
