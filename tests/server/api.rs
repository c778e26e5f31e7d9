//! The backend API: publish into a room (JSON and MessagePack), read a room, list rooms,
//! disconnect a session; a bad or missing key gets 401, and without a key the API is off.

use parlor_client::protocol::{close, decode_value, encode_value, ServerFrame, SessionId, Value};

use crate::common::*;

const KEY: &str = "backend-key-0123456789";

fn api_node() -> parlor::BackgroundNode {
    let mut config = test_config();
    config.api.key = KEY.into();
    start(config)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn publish_reaches_every_member_of_the_room() {
    let node = api_node();
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    a.join("table").await.expect("join");
    b.join("table").await.expect("join");
    let auth = bearer(KEY);
    let body = serde_json::json!({"event": "deal", "data": {"cards": [1, 2, 3]}});
    let (status, _, answer) = http(
        &node,
        "POST",
        "/api/rooms/table/events",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("json");
    for client in [&mut a, &mut b] {
        let frame =
            next_matching(client, "the event", |f| matches!(f, ServerFrame::Event(_))).await;
        let ServerFrame::Event(event) = frame else {
            unreachable!()
        };
        assert_eq!(event.from, SessionId::NIL);
        assert_eq!(event.event, "deal");
        assert_eq!(Some(event.offset), answer["offset"].as_u64());
        assert_eq!(
            event.data,
            Value::Map(vec![(
                Value::from("cards"),
                Value::Array(vec![Value::from(1), Value::from(2), Value::from(3)])
            )])
        );
    }
    // The same in MessagePack, answered in MessagePack.
    let body = encode_value(&serde_json::json!({"event": "tick", "data": 7}));
    let (status, content_type, answer) = http(
        &node,
        "POST",
        "/api/rooms/table/events",
        &[
            ("authorization", &auth),
            ("content-type", "application/msgpack"),
            ("accept", "application/msgpack"),
        ],
        body.to_vec(),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/msgpack")
    );
    let answer: serde_json::Value = decode_value(&answer, 8).expect("msgpack answer");
    assert!(answer["offset"].as_u64().is_some());
    let frame = next_matching(
        &mut a,
        "the tick",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "tick"),
    )
    .await;
    assert!(matches!(frame, ServerFrame::Event(e) if e.data == Value::from(7)));
    // No such room: 404.
    let (status, _, _) = http(
        &node,
        "POST",
        "/api/rooms/nowhere/events",
        &[("authorization", &auth)],
        br#"{"event":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_bad_or_missing_key_gets_401_and_no_key_configured_turns_the_api_off() {
    let node = api_node();
    let mut a = connect(&node).await;
    a.join("table").await.expect("join");
    let body = br#"{"event":"forged"}"#.to_vec();
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong-key-0123456789")],
    ] {
        let (status, _, answer) = http(
            &node,
            "POST",
            "/api/rooms/table/events",
            &headers,
            body.clone(),
        )
        .await;
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&answer));
    }
    let (status, _, _) = http(&node, "GET", "/api/rooms", &[], vec![]).await;
    assert_eq!(status, 401);
    // Nothing reached the room: the next event is a marker.
    a.emit("table", "marker", Value::Nil, true)
        .await
        .expect("emit");
    let frame = next_matching(&mut a, "an event", |f| matches!(f, ServerFrame::Event(_))).await;
    assert!(matches!(frame, ServerFrame::Event(e) if e.event == "marker"));

    let off = start(test_config());
    let (status, _, _) = http(
        &off,
        "GET",
        "/api/rooms",
        &[("authorization", "Bearer ")],
        vec![],
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn read_list_and_disconnect() {
    let node = api_node();
    let auth = bearer(KEY);
    let mut a = connect(&node).await;
    a.create(
        Some("secret"),
        parlor_client::protocol::RoomOptions {
            private: true,
            ..Default::default()
        },
    )
    .await
    .expect("create");
    a.update_state(
        "secret",
        vec![parlor_client::protocol::StateOp::Set {
            path: vec!["score".into()],
            value: Value::from(3),
        }],
        None,
    )
    .await
    .expect("update");
    let (status, _, body) = http(
        &node,
        "GET",
        "/api/rooms/secret",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let room: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(room["room"], "secret");
    assert_eq!(room["private"], true);
    assert_eq!(room["state"]["score"], 3);
    assert_eq!(room["version"], 1);
    assert_eq!(room["members"][0]["session"], a.session_id().to_string());
    // Private rooms are listed to the backend, not to GET /rooms.
    let (_, _, body) = http(
        &node,
        "GET",
        "/api/rooms",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(list["rooms"][0]["room"], "secret");
    // ...and said to be private there, which a public room is not.
    assert_eq!(list["rooms"][0]["private"], true);
    let mut b = connect(&node).await;
    b.join("open").await.expect("join");
    let (_, _, body) = http(
        &node,
        "GET",
        "/api/rooms",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let privacy: Vec<(&str, bool)> = list["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| Some((r["room"].as_str()?, r["private"].as_bool()?)))
        .collect();
    assert_eq!(privacy, [("secret", true), ("open", false)]);
    let (_, public) = get_json(&node, "/rooms").await;
    let public: Vec<&str> = public["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["room"].as_str())
        .collect();
    assert_eq!(public, ["open"]);

    let path = format!("/api/sessions/{}", a.session_id());
    let (status, _, _) = http(&node, "DELETE", &path, &[("authorization", &auth)], vec![]).await;
    assert_eq!(status, 204);
    let closed = within(5, "the close", a.wait_closed()).await;
    assert_eq!(closed.map(|c| u16::from(c.code)), Some(close::KICKED));
    let (status, _, _) = http(&node, "DELETE", &path, &[("authorization", &auth)], vec![]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_publish_body_written_as_an_array_is_refused() {
    // serde would read `["forged", 1]` positionally as {event, data}, in JSON and MessagePack.
    let node = api_node();
    let mut a = connect(&node).await;
    a.join("table").await.expect("join");
    let auth = bearer(KEY);
    let positional = serde_json::json!(["forged", 1]);
    for (content_type, body) in [
        ("application/json", positional.to_string().into_bytes()),
        ("application/msgpack", encode_value(&positional).to_vec()),
    ] {
        let (status, _, answer) = http(
            &node,
            "POST",
            "/api/rooms/table/events",
            &[("authorization", &auth), ("content-type", content_type)],
            body,
        )
        .await;
        assert_eq!(
            status,
            400,
            "{content_type}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // Nothing reached the room: the next event is a marker.
    a.emit("table", "marker", Value::Nil, true)
        .await
        .expect("emit");
    let frame = next_matching(&mut a, "an event", |f| matches!(f, ServerFrame::Event(_))).await;
    assert!(matches!(frame, ServerFrame::Event(e) if e.event == "marker"));
}

#[tokio::test]
async fn json_bodies_are_held_to_max_depth_as_msgpack_bodies_are() {
    let node = api_node();
    let mut a = connect(&node).await;
    a.join("table").await.expect("join");
    let auth = bearer(KEY);
    let nested =
        |levels: usize| (0..levels).fold(serde_json::json!(0), |v, _| serde_json::json!([v]));
    // The body's own map is level 1, so `data` may nest max_depth - 1 (31) deep.
    for (levels, allowed) in [(31, true), (32, false)] {
        let body = serde_json::json!({"event": "deep", "data": nested(levels)});
        let mut answers = Vec::new();
        for (content_type, bytes) in [
            ("application/json", body.to_string().into_bytes()),
            ("application/msgpack", encode_value(&body).to_vec()),
        ] {
            let (status, _, answer) = http(
                &node,
                "POST",
                "/api/rooms/table/events",
                &[("authorization", &auth), ("content-type", content_type)],
                bytes,
            )
            .await;
            let answer: serde_json::Value = serde_json::from_slice(&answer).expect("json answer");
            answers.push((status, answer));
        }
        let (json, msgpack) = (&answers[0], &answers[1]);
        assert_eq!(
            json.0,
            if allowed { 200 } else { 400 },
            "{levels}: {json:?}"
        );
        assert_eq!(json.0, msgpack.0, "{levels}");
        if !allowed {
            assert_eq!(json.1, msgpack.1);
            assert_eq!(json.1["error"], "bad_request");
        }
    }
    // Only the two allowed bodies reached the room.
    for _ in 0..2 {
        let frame = next_matching(&mut a, "an event", |f| matches!(f, ServerFrame::Event(_))).await;
        assert!(matches!(frame, ServerFrame::Event(e) if e.event == "deep"));
    }
    a.emit("table", "marker", Value::Nil, true)
        .await
        .expect("emit");
    let frame = next_matching(&mut a, "an event", |f| matches!(f, ServerFrame::Event(_))).await;
    assert!(matches!(frame, ServerFrame::Event(e) if e.event == "marker"));
}

/// The keys of a map as written, in order and repeats included (serde_json and rmpv keep
/// only one of each).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[tokio::test]
async fn a_room_read_names_each_key_once_with_members_the_list() {
    let node = api_node();
    let auth = bearer(KEY);
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    a.join("table").await.expect("join");
    b.join("table").await.expect("join");
    let (status, _, json) = http(
        &node,
        "GET",
        "/api/rooms/table",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let Keys(mut keys) = serde_json::from_slice(&json).expect("a map");
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        count,
        "a key repeats: {}",
        String::from_utf8_lossy(&json)
    );
    let room: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(room["member_count"], 2);
    assert_eq!(room["members"][1]["session"], b.session_id().to_string());
    // Every field of the room's listing is there, the count under its own name.
    let (_, _, list) = http(
        &node,
        "GET",
        "/api/rooms",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&list).expect("json");
    for key in list["rooms"][0].as_object().expect("a room").keys() {
        let key = if key == "members" {
            "member_count"
        } else {
            key.as_str()
        };
        assert!(keys.iter().any(|k| k == key), "{key} is missing");
    }
    // The same map in MessagePack.
    let (_, _, packed) = http(
        &node,
        "GET",
        "/api/rooms/table",
        &[("authorization", &auth), ("accept", "application/msgpack")],
        vec![],
    )
    .await;
    let Keys(mut packed_keys) = decode_value(&packed, 32).expect("a msgpack map");
    packed_keys.sort();
    assert_eq!(packed_keys, keys);
}

#[tokio::test]
async fn a_state_holding_map_keys_json_cannot_carry_is_read_as_json_all_the_same() {
    // The state may hold maps keyed by nil, integers, arrays (PROTOCOL.md section 4); JSON
    // names members by strings only, so the JSON answer writes such a key as its JSON text.
    let node = api_node();
    let auth = bearer(KEY);
    let mut a = connect(&node).await;
    a.join("odd").await.expect("join");
    let odd = Value::Map(vec![
        (Value::Nil, Value::from(1)),
        (Value::from(2), Value::from("two")),
        (
            Value::Array(vec![Value::from(3), Value::from("x")]),
            Value::Binary(vec![4, 5]),
        ),
    ]);
    a.update_state(
        "odd",
        vec![parlor_client::protocol::StateOp::Set {
            path: vec!["m".into()],
            value: odd.clone(),
        }],
        None,
    )
    .await
    .expect("update");
    let (status, content_type, body) = http(
        &node,
        "GET",
        "/api/rooms/odd",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let room: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        room["state"]["m"],
        serde_json::json!({"null": 1, "2": "two", "[3,\"x\"]": [4, 5]})
    );
    // The listing, and the same room in MessagePack, keys as they are.
    let (status, _, _) = http(
        &node,
        "GET",
        "/api/rooms",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, packed) = http(
        &node,
        "GET",
        "/api/rooms/odd",
        &[("authorization", &auth), ("accept", "application/msgpack")],
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let room: Value = decode_value(&packed, 32).expect("msgpack");
    let state = room
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("state")))
        .map(|(_, v)| v.clone());
    assert_eq!(state, Some(Value::Map(vec![(Value::from("m"), odd)])));
}

#[tokio::test]
async fn a_body_is_held_to_max_frame_bytes_after_the_key_is_checked() {
    // actix-web's own limit (256 KiB) used to answer before the key was checked, in plain
    // text, whatever max_frame_bytes allowed.
    let mut config = test_config();
    config.api.key = KEY.into();
    config.limits.max_frame_bytes = 512 << 10;
    config.rooms.history_bytes = 512 << 10;
    let node = start(config);
    let mut a = connect(&node).await;
    a.join("table").await.expect("join");
    let auth = bearer(KEY);
    let body = |bytes: usize| {
        serde_json::json!({"event": "big", "data": "x".repeat(bytes)})
            .to_string()
            .into_bytes()
    };
    // Over actix's 256 KiB, within max_frame_bytes: published.
    let (status, _, answer) = http(
        &node,
        "POST",
        "/api/rooms/table/events",
        &[("authorization", &auth)],
        body(300 << 10),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let frame = next_matching(
        &mut a,
        "the big event",
        |f| matches!(f, ServerFrame::Event(e) if e.event == "big"),
    )
    .await;
    assert!(
        matches!(frame, ServerFrame::Event(e) if e.data.as_str().map(str::len) == Some(300 << 10))
    );
    // Without the key, the key is what is wrong; over max_frame_bytes, 413 in the common body,
    // whether the length is declared or the body only grows past it (chunked). The server
    // answers the first two without reading the body, and then closes the connection: the
    // answer is read while the body is still being sent.
    let head = |auth: Option<&str>, framing: &str| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /api/rooms/table/events HTTP/1.1\r\nHost: {}\r\n{auth}\
             Content-Type: application/json\r\n{framing}\r\n",
            node.addr
        )
    };
    let declared = |n: usize| format!("Content-Length: {n}\r\n");
    let chunked = {
        let mut bytes = Vec::new();
        for chunk in body(600 << 10).chunks(16 << 10) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        bytes
    };
    let cases = [
        (
            head(None, &declared(300 << 10)),
            body(300 << 10),
            401,
            "unauthorized",
        ),
        (
            head(Some(&auth), &declared(600 << 10)),
            body(600 << 10),
            413,
            "payload_too_large",
        ),
        (
            head(Some(&auth), "Transfer-Encoding: chunked\r\n"),
            chunked,
            413,
            "payload_too_large",
        ),
    ];
    for (head, body, want_status, want_code) in cases {
        let (status, answer) = raw_request(&node, head.into_bytes(), body).await;
        let answer: serde_json::Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&answer)));
        assert_eq!(
            (status, answer["error"].as_str()),
            (want_status, Some(want_code)),
            "{answer}"
        );
    }
    // Nothing more reached the room.
    a.emit("table", "marker", Value::Nil, true)
        .await
        .expect("emit");
    let frame = next_matching(&mut a, "an event", |f| matches!(f, ServerFrame::Event(_))).await;
    assert!(matches!(frame, ServerFrame::Event(e) if e.event == "marker"));
}

/// Sends `head` and then `body` on a connection of its own, while reading the answer: its
/// status and its body (by its Content-Length). Writing stops, without failing, when the
/// server closes the connection after an answer given before the body was read.
async fn raw_request(
    node: &parlor::BackgroundNode,
    head: Vec<u8>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        if writer.write_all(&head).await.is_ok() {
            let _ = writer.write_all(&body).await;
        }
        writer
    });
    let mut raw = Vec::new();
    let answer = within(5, "the answer", async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = reader.read(&mut chunk).await.unwrap_or(0);
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + length {
                    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok());
                    return (status.unwrap_or(0), raw[end + 4..end + 4 + length].to_vec());
                }
            }
            assert!(n > 0, "closed before the answer: {text}");
        }
    })
    .await;
    sending.abort();
    answer
}
