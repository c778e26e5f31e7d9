//! `GET /metrics` after a scripted session: every family is there, with the values the script
//! makes plausible (exact where the script fixes them).

use std::collections::HashMap;

use parlor_client::protocol::{ServerFrame, Value};

use crate::common::*;

/// The samples of a Prometheus text page, by name with labels.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn every_family_is_exposed_with_plausible_values_after_a_scripted_session() {
    let mut config = test_config();
    config.session.reconnect_grace_ms = 30_000;
    config.rate_limits.frames_per_second = 5;
    config.rate_limits.frame_burst = 10;
    let node = start(config);
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    let (b_id, b_token) = (b.session_id(), b.welcome().resume_token.clone());
    a.join("m").await.expect("join");
    let joined = b.join_room("m", None).await.expect("join");
    // Three events from a to b: fan-out 1 each.
    for n in 0..3 {
        a.emit("m", "n", Value::from(n), false).await.expect("emit");
    }
    // One refused request.
    assert!(a.emit("nowhere", "n", Value::Nil, false).await.is_err());
    // A burst over the rate limit (a has used 5 of its 10 tokens).
    let mut refused = 0;
    for n in 0..10 {
        if a.emit("m", "n", Value::from(n), false).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 1);
    // b drops and resumes with replay.
    let position = parlor_client::protocol::RoomPosition::from_joined(&joined);
    b.abort();
    let mut again = connect(&node).await;
    let resumed = again
        .resume(b_id, &b_token, vec![position])
        .await
        .expect("resume");
    assert!(resumed.rooms[0].recovered);
    next_matching(&mut again, "a replayed event", |f| {
        matches!(f, ServerFrame::Event(_))
    })
    .await;

    let (status, _, page) = http(&node, "GET", "/metrics", &[], vec![]).await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page).expect("text");
    let m = samples(&page);
    let get = |name: &str| match m.get(name) {
        Some(value) => *value,
        None => panic!("no sample {name} in\n{page}"),
    };
    assert_eq!(get("parlor_sessions"), 2.0, "a and the resumed b");
    assert_eq!(get("parlor_sessions_away"), 0.0);
    assert_eq!(get("parlor_rooms"), 1.0);
    assert!(get("parlor_frames_received_total") >= 16.0);
    assert!(get("parlor_received_bytes_total") >= 16.0 * 20.0);
    assert!(get("parlor_frames_sent_total") >= get("parlor_frames_received_total"));
    assert!(get("parlor_sent_bytes_total") > get("parlor_frames_sent_total"));
    assert!(get("parlor_broadcast_fanout_count") >= 3.0);
    assert!(get("parlor_broadcast_fanout_sum") >= 3.0);
    assert_eq!(get("parlor_errors_total{code=\"not_in_room\"}"), 1.0);
    assert_eq!(
        get("parlor_errors_total{code=\"rate_limited\"}"),
        f64::from(refused)
    );
    assert_eq!(
        get("parlor_rate_limited_total{limit=\"frames\"}"),
        f64::from(refused)
    );
    assert_eq!(get("parlor_slow_consumer_evictions_total"), 0.0);
    assert_eq!(get("parlor_rate_limit_closes_total"), 0.0);
    assert_eq!(get("parlor_resumes_total{outcome=\"replayed\"}"), 1.0);
    assert_eq!(get("parlor_auth_failures_total"), 0.0);
    // A node that runs alone has no cluster to report on: no parlor_cluster_up 0 that reads
    // like an outage.
    assert!(!page.contains("parlor_cluster_"), "{page}");
}
