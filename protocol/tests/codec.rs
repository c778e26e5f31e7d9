//! Round trips of every frame, and the classification of bad client frames.

use parlor_protocol::*;

fn id(n: u8) -> SessionId {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
        .parse()
        .unwrap()
}

fn rich_value() -> Value {
    Value::Map(vec![
        (Value::from("bin"), Value::Binary(vec![0, 1, 2, 255])),
        (Value::from("f64"), Value::F64(1.5)),
        (Value::from("neg"), Value::from(-70_000)),
        (Value::from("big"), Value::from(u64::MAX)),
        (
            Value::from(7),
            Value::Array(vec![Value::Nil, Value::from(true), Value::from("ü")]),
        ),
        (Value::from("ext"), Value::Ext(5, vec![9, 9])),
    ])
}

fn metadata() -> Metadata {
    [
        ("mode".to_string(), Value::from("ctf")),
        ("anything".to_string(), rich_value()),
    ]
    .into_iter()
    .collect()
}

fn full_options() -> RoomOptions {
    RoomOptions {
        max_members: Some(4),
        private: true,
        password: Some("pw".into()),
        metadata: metadata(),
        dispose_when_empty: false,
        room_type: None,
        type_options: None,
    }
}

fn full_filter() -> RoomFilter {
    RoomFilter {
        mode: Some("ctf".into()),
        metadata: metadata(),
        free_seats: true,
        room_type: None,
    }
}

fn ops() -> Vec<StateOp> {
    vec![
        StateOp::Set {
            path: vec!["grid".into(), "1,2".into()],
            value: rich_value(),
        },
        StateOp::Delete {
            path: vec!["x".into()],
        },
    ]
}

fn info() -> RoomInfo {
    RoomInfo {
        room: "r".into(),
        members: 2,
        max_members: 4,
        locked: true,
        locked_by_owner: true,
        password: false,
        owner: Some(id(1)),
        metadata: metadata(),
        room_type: None,
    }
}

#[test]
fn every_client_frame_round_trips() {
    let frames = vec![
        ClientFrame::Join {
            reference: Some(u64::MAX),
            room: "r".into(),
            password: None,
            create: true,
        },
        ClientFrame::Join {
            reference: None,
            room: "r".into(),
            password: Some("pw".into()),
            create: true,
        },
        ClientFrame::Create {
            reference: Some(1),
            room: None,
            options: RoomOptions::default(),
        },
        ClientFrame::Create {
            reference: None,
            room: Some("r".into()),
            options: full_options(),
        },
        ClientFrame::JoinOrCreate {
            reference: Some(2),
            filter: full_filter(),
            options: full_options(),
        },
        ClientFrame::JoinOrCreate {
            reference: None,
            filter: RoomFilter::default(),
            options: RoomOptions::default(),
        },
        ClientFrame::Lock {
            reference: Some(3),
            room: "r".into(),
        },
        ClientFrame::Unlock {
            reference: None,
            room: "r".into(),
        },
        ClientFrame::Kick {
            reference: Some(4),
            room: "r".into(),
            session: id(2),
        },
        ClientFrame::SetMetadata {
            reference: None,
            room: "r".into(),
            metadata: metadata(),
        },
        ClientFrame::ListRooms {
            reference: Some(5),
            filter: full_filter(),
            limit: Some(10),
        },
        ClientFrame::ListRooms {
            reference: None,
            filter: RoomFilter::default(),
            limit: None,
        },
        ClientFrame::SubscribeLobby {
            reference: Some(6),
            filter: full_filter(),
        },
        ClientFrame::UnsubscribeLobby { reference: None },
        ClientFrame::UpdateState {
            reference: Some(7),
            room: "r".into(),
            ops: ops(),
            if_version: Some(3),
        },
        ClientFrame::UpdateState {
            reference: None,
            room: "r".into(),
            ops: vec![],
            if_version: None,
        },
        ClientFrame::Resume {
            reference: Some(8),
            session: id(1),
            token: "t".repeat(64),
            rooms: vec![RoomPosition {
                room: "r".into(),
                epoch: "e".into(),
                offset: 12,
            }],
        },
        ClientFrame::Leave {
            reference: None,
            room: "ρ".into(),
        },
        ClientFrame::Emit {
            reference: Some(0),
            room: "r".into(),
            event: "e".into(),
            data: rich_value(),
            echo: true,
        },
        ClientFrame::Emit {
            reference: None,
            room: "r".into(),
            event: "e".into(),
            data: Value::Nil,
            echo: false,
        },
        ClientFrame::Send {
            reference: Some(3),
            to: id(1),
            event: "e".into(),
            data: rich_value(),
        },
    ];
    for frame in frames {
        let bytes = encode_client(&frame);
        assert_eq!(decode_client(&bytes, 32).unwrap(), frame);
    }
}

#[test]
fn every_server_frame_round_trips() {
    let limits = Limits {
        max_frame_bytes: 1,
        max_rooms_per_session: 2,
        max_members_per_room: 3,
        max_room_name_bytes: 4,
        max_event_name_bytes: 5,
        max_depth: 6,
        outbound_budget_bytes: 7,
        max_state_bytes: 8,
        max_state_values: 12,
        max_metadata_bytes: 9,
        frames_per_second: 10,
        bytes_per_second: 11,
    };
    let frames = vec![
        ServerFrame::Welcome(WelcomeFrame {
            session: id(1),
            protocol: 1,
            heartbeat_ms: 2,
            timeout_ms: 3,
            limits,
            resume_token: "t".repeat(64),
            reconnect_grace_ms: 15_000,
            user: Some("alice".into()),
        }),
        ServerFrame::Joined(JoinedFrame {
            reference: Some(9),
            room: "r".into(),
            members: vec![id(1), id(2)],
            owner: Some(id(1)),
            max_members: 4,
            locked: false,
            locked_by_owner: false,
            private: true,
            metadata: metadata(),
            state: {
                let mut doc = Document::new();
                doc.apply(&ops(), StateLimits::UNBOUNDED).unwrap();
                doc
            },
            version: 12,
            epoch: "e1".into(),
            offset: 40,
            users: [(id(1), "alice".to_string())].into_iter().collect(),
            away: vec![id(2)],
            room_type: None,
        }),
        ServerFrame::RoomUpdate(RoomUpdateFrame {
            room: "r".into(),
            owner: None,
            locked: true,
            locked_by_owner: true,
            metadata: Metadata::new(),
            offset: 3,
        }),
        ServerFrame::StatePatch(StatePatchFrame {
            room: "r".into(),
            patches: vec![
                StatePatch {
                    version: 1,
                    author: id(1),
                    ops: ops(),
                },
                StatePatch {
                    version: 2,
                    author: id(2),
                    ops: vec![],
                },
            ],
            offset: 4,
        }),
        ServerFrame::RoomList {
            reference: None,
            rooms: vec![info(), info()],
        },
        ServerFrame::Lobby(LobbyFrame {
            added: vec![info()],
            changed: vec![],
            removed: vec!["gone".into()],
        }),
        ServerFrame::Left {
            room: "r".into(),
            reason: LeaveReason::SlowConsumer,
        },
        ServerFrame::Presence(PresenceFrame {
            room: "r".into(),
            session: id(2),
            status: PresenceStatus::Left,
            reason: Some(LeaveReason::Kicked),
            user: None,
            offset: 5,
        }),
        ServerFrame::Presence(PresenceFrame {
            room: "r".into(),
            session: id(2),
            status: PresenceStatus::Away,
            reason: None,
            user: Some("bob".into()),
            offset: 6,
        }),
        ServerFrame::Resumed(ResumedFrame {
            reference: Some(1),
            session: id(2),
            rooms: vec![ResumedRoom {
                room: "r".into(),
                epoch: "e1".into(),
                offset: 7,
                recovered: false,
            }],
        }),
        ServerFrame::Event(EventFrame {
            room: "r".into(),
            from: id(3),
            event: "e".into(),
            data: rich_value(),
            offset: u64::MAX,
        }),
        ServerFrame::Direct(DirectFrame {
            from: id(4),
            event: "e".into(),
            data: rich_value(),
        }),
        ServerFrame::Ok {
            reference: 9,
            data: None,
        },
        ServerFrame::Error(ErrorFrame {
            reference: None,
            code: ErrorCode::Overloaded,
            message: "m".into(),
            reason: None,
        }),
    ];
    for frame in frames {
        let bytes = encode_server(&frame);
        assert_eq!(decode_server(&bytes, 32).unwrap(), frame);
    }
}

/// Builds a map by hand, as a client in another language would.
fn map(fields: &[(&str, Value)]) -> Vec<u8> {
    encode_map(fields).to_vec()
}

#[test]
fn key_order_and_integer_width_do_not_matter_and_unknown_keys_are_ignored() {
    let mut bytes = vec![0x84];
    rmpv::encode::write_value(&mut bytes, &Value::from("room")).unwrap();
    rmpv::encode::write_value(&mut bytes, &Value::from("r")).unwrap();
    rmpv::encode::write_value(&mut bytes, &Value::from("ref")).unwrap();
    bytes.extend([0xcf, 0, 0, 0, 0, 0, 0, 0, 5]); // 5 as uint 64
    rmpv::encode::write_value(&mut bytes, &Value::from("extra")).unwrap();
    rmpv::encode::write_value(&mut bytes, &Value::Array(vec![Value::from(1)])).unwrap();
    rmpv::encode::write_value(&mut bytes, &Value::from("type")).unwrap();
    rmpv::encode::write_value(&mut bytes, &Value::from("join")).unwrap();
    assert_eq!(
        decode_client(&bytes, 32).unwrap(),
        ClientFrame::Join {
            reference: Some(5),
            room: "r".into(),
            password: None,
            create: true,
        }
    );
}

fn code_of(bytes: &[u8], depth: usize) -> (ErrorCode, Option<u64>) {
    let err = decode_client(bytes, depth).unwrap_err();
    (err.code, err.reference)
}

#[test]
fn bad_frames_are_classified() {
    let join = encode_client(&ClientFrame::Join {
        reference: Some(1),
        room: "r".into(),
        password: None,
        create: true,
    });
    assert_eq!(code_of(&[], 32), (ErrorCode::Malformed, None));
    assert_eq!(code_of(&[0xc1], 32), (ErrorCode::Malformed, None));
    assert_eq!(
        code_of(&join[..join.len() - 2], 32),
        (ErrorCode::Malformed, None)
    );
    assert_eq!(
        code_of(&[&join[..], &[0xc0]].concat(), 32),
        (ErrorCode::Malformed, None)
    );
    assert_eq!(code_of(&[0x93, 1, 2, 3], 32), (ErrorCode::NotAMap, None));
    // serde would read a tagged enum from an array with the tag first, and the envelope of a
    // frame that fails (an unknown type, a missing field) likewise: no `ref` is read from it.
    for array in [
        vec![Value::from("unsubscribe_lobby")],
        vec![Value::from("join"), Value::from(1), Value::from("r")],
        vec![Value::from("dance"), Value::from(5)],
        vec![Value::from("join"), Value::from(5)],
    ] {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &Value::Array(array)).unwrap();
        assert_eq!(code_of(&bytes, 32), (ErrorCode::NotAMap, None));
    }
    assert_eq!(
        code_of(
            &map(&[("type", Value::from("nope")), ("ref", Value::from(4))]),
            32
        ),
        (ErrorCode::UnknownType, Some(4))
    );
    assert_eq!(
        code_of(
            &map(&[("type", Value::from(1)), ("ref", Value::from(4))]),
            32
        ),
        (ErrorCode::InvalidField, None)
    );
    // serde would take an integer `type` as a variant index (1 is `create`, 12
    // `unsubscribe_lobby`, both valid with no other field); the protocol names types by string,
    // wherever `type` stands in the map.
    for (fields, why) in [
        (
            vec![("type", Value::from(12)), ("ref", Value::from(4))],
            "type first",
        ),
        (
            vec![("ref", Value::from(4)), ("type", Value::from(12))],
            "type second",
        ),
        (
            vec![("ref", Value::from(4)), ("type", Value::from(1))],
            "type second",
        ),
    ] {
        assert_eq!(
            code_of(&map(&fields), 32),
            (ErrorCode::InvalidField, None),
            "{why}"
        );
    }
    // A string `type` after other keys still decodes.
    assert!(decode_client(
        &map(&[
            ("ref", Value::from(4)),
            ("type", Value::from("unsubscribe_lobby"))
        ]),
        32
    )
    .is_ok());
    assert_eq!(
        code_of(&map(&[("ref", Value::from(4))]), 32),
        (ErrorCode::InvalidField, None)
    );
    assert_eq!(
        code_of(
            &map(&[
                ("type", Value::from("send")),
                ("ref", Value::from(2)),
                ("to", Value::from("not-a-uuid")),
                ("event", Value::from("e"))
            ]),
            32
        ),
        (ErrorCode::InvalidField, Some(2))
    );
    assert_eq!(
        code_of(
            &map(&[
                ("type", Value::from("emit")),
                ("ref", Value::from(3)),
                ("room", Value::from("r")),
                ("event", Value::from("e")),
                ("echo", Value::from("yes"))
            ]),
            32
        ),
        (ErrorCode::InvalidField, Some(3))
    );
}

/// Every struct-typed field of a client frame, as the array a serde derive would also read
/// positionally, beside the map it must be. PROTOCOL.md: positional arrays are never used.
fn struct_fields_as_arrays_and_as_maps() -> Vec<(&'static str, &'static str, Vec<u8>, Vec<u8>)> {
    let arr = |items: Vec<Value>| Value::Array(items);
    let obj = |fields: &[(&str, Value)]| {
        Value::Map(
            fields
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        )
    };
    let frame = |kind: &str, field: &str, value: Value| {
        map(&[
            ("type", Value::from(kind)),
            ("ref", Value::from(9)),
            ("room", Value::from("r")),
            ("session", Value::from(id(1).to_string())),
            ("token", Value::from("t")),
            (field, value),
        ])
    };
    let options = (
        arr(vec![Value::from(1)]),
        obj(&[("max_members", Value::from(1))]),
    );
    let filter = (
        arr(vec![Value::from("duel")]),
        obj(&[("mode", Value::from("duel"))]),
    );
    let ops = (
        arr(vec![arr(vec![
            Value::from("set"),
            arr(vec![Value::from("a")]),
            Value::from(1),
        ])]),
        arr(vec![obj(&[
            ("op", Value::from("set")),
            ("path", arr(vec![Value::from("a")])),
            ("value", Value::from(1)),
        ])]),
    );
    let rooms = (
        arr(vec![arr(vec![
            Value::from("r"),
            Value::from("e"),
            Value::from(1),
        ])]),
        arr(vec![obj(&[
            ("room", Value::from("r")),
            ("epoch", Value::from("e")),
            ("offset", Value::from(1)),
        ])]),
    );
    let cases = [
        ("create", "options", &options),
        ("join_or_create", "options", &options),
        ("join_or_create", "filter", &filter),
        ("list_rooms", "filter", &filter),
        ("subscribe_lobby", "filter", &filter),
        ("update_state", "ops", &ops),
        ("resume", "rooms", &rooms),
    ];
    cases
        .into_iter()
        .map(|(kind, field, (array, good))| {
            (
                kind,
                field,
                frame(kind, field, array.clone()),
                frame(kind, field, good.clone()),
            )
        })
        .collect()
}

#[test]
fn struct_fields_written_as_arrays_are_invalid_fields() {
    let mut accepted = Vec::new();
    for (kind, field, array, good) in struct_fields_as_arrays_and_as_maps() {
        assert!(
            decode_client(&good, 32).is_ok(),
            "{kind}: the map form of {field} decodes"
        );
        match decode_client(&array, 32) {
            Err(e) if (e.code, e.reference) == (ErrorCode::InvalidField, Some(9)) => {}
            other => accepted.push(format!("{kind}.{field}: {other:?}")),
        }
    }
    assert!(
        accepted.is_empty(),
        "array forms not refused: {accepted:#?}"
    );
    // Nor any other value where a map belongs.
    for value in [
        Value::from(1),
        Value::from("x"),
        Value::Nil,
        Value::from(true),
    ] {
        let bytes = map(&[
            ("type", Value::from("create")),
            ("ref", Value::from(9)),
            ("options", value.clone()),
        ]);
        assert_eq!(
            code_of(&bytes, 32),
            (ErrorCode::InvalidField, Some(9)),
            "{value}"
        );
    }
    // A state op's array form inside an otherwise valid batch refuses the whole frame.
    let mixed = map(&[
        ("type", Value::from("update_state")),
        ("ref", Value::from(9)),
        ("room", Value::from("r")),
        (
            "ops",
            Value::Array(vec![
                Value::Map(vec![
                    (Value::from("op"), Value::from("delete")),
                    (Value::from("path"), Value::Array(vec![Value::from("a")])),
                ]),
                Value::Array(vec![
                    Value::from("delete"),
                    Value::Array(vec![Value::from("b")]),
                ]),
            ]),
        ),
    ]);
    assert_eq!(code_of(&mixed, 32), (ErrorCode::InvalidField, Some(9)));
}

#[test]
fn depth_is_bounded_exactly() {
    let nested = |levels: usize| {
        let mut v = Value::from(0);
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        map(&[
            ("type", Value::from("emit")),
            ("ref", Value::from(1)),
            ("room", Value::from("r")),
            ("event", Value::from("e")),
            ("data", v),
        ])
    };
    assert!(
        decode_client(&nested(3), 4).is_ok(),
        "map + 3 arrays = depth 4"
    );
    assert_eq!(code_of(&nested(4), 4), (ErrorCode::TooDeep, Some(1)));
    // Far deeper than anything salvageable: still a clean error, no stack overflow.
    let mut deep = vec![0x91; 100_000];
    deep.push(0xc0);
    assert_eq!(code_of(&deep, 32).0, ErrorCode::TooDeep);
}

/// What the server does with a frame that decodes: re-encodes its data inside an event.
fn reencode(bytes: &[u8]) {
    if let Ok(frame) = decode_client(bytes, 32) {
        let _ = encode_client(&frame);
        if let ClientFrame::Emit { data, .. } | ClientFrame::Send { data, .. } = frame {
            let event = EventFrame {
                room: "r".into(),
                from: id(1),
                event: "e".into(),
                data,
                offset: 0,
            };
            let _ = encode_server(&ServerFrame::Event(event));
        }
    }
}

#[test]
fn truncations_and_byte_flips_of_valid_frames_never_panic() {
    let frames = [
        encode_client(&ClientFrame::Emit {
            reference: Some(300),
            room: "room".into(),
            event: "ev".into(),
            data: rich_value(),
            echo: true,
        }),
        encode_client(&ClientFrame::Send {
            reference: Some(1),
            to: id(9),
            event: "e".into(),
            data: Value::from("x"),
        }),
    ];
    for frame in frames {
        for cut in 0..frame.len() {
            reencode(&frame[..cut]);
        }
        for i in 0..frame.len() {
            for flip in [0x01u8, 0x10, 0x80, 0xff] {
                let mut bytes = frame.to_vec();
                bytes[i] ^= flip;
                reencode(&bytes);
            }
        }
        // Strings that are not UTF-8 inside data (a str header over bytes 0xff 0xfe).
        let mut bad_utf8 = encode_map(&[
            ("type", Value::from("emit")),
            ("room", Value::from("r")),
            ("event", Value::from("e")),
        ])
        .to_vec();
        bad_utf8[0] += 1;
        bad_utf8.extend([0xa4, b'd', b'a', b't', b'a', 0xa2, 0xff, 0xfe]);
        match decode_client(&bad_utf8, 32) {
            Ok(ClientFrame::Emit { data, .. }) => assert_ne!(data, Value::Nil, "data was read"),
            other => panic!("a str that is not UTF-8 inside data must still decode: {other:?}"),
        }
        reencode(&bad_utf8);
    }
}

#[test]
fn error_code_names_match_their_wire_form() {
    let codes = [
        ErrorCode::TextFrame,
        ErrorCode::Malformed,
        ErrorCode::NotAMap,
        ErrorCode::TooDeep,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidEvent,
        ErrorCode::NotInRoom,
        ErrorCode::AlreadyJoined,
        ErrorCode::TooManyRooms,
        ErrorCode::RoomFull,
        ErrorCode::UnknownSession,
        ErrorCode::Overloaded,
        ErrorCode::RoomExists,
        ErrorCode::RoomLocked,
        ErrorCode::WrongPassword,
        ErrorCode::NotOwner,
        ErrorCode::VersionConflict,
        ErrorCode::StateTooLarge,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidOptions,
        ErrorCode::RoomLimit,
        ErrorCode::ResumeFailed,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
    ];
    let doc = include_str!("../PROTOCOL.md");
    for code in codes {
        let wire = rmp_serde::to_vec(&code).unwrap();
        assert_eq!(
            rmpv::decode::read_value(&mut &wire[..]).unwrap(),
            Value::from(code.as_str())
        );
        assert!(
            doc.contains(&format!("| `{}` |", code.as_str())),
            "PROTOCOL.md lists {}",
            code.as_str()
        );
    }
}

#[test]
fn leave_reason_names_match_their_wire_form() {
    use parlor_protocol::LeaveReason;
    let reasons = [
        LeaveReason::Leave,
        LeaveReason::Closed,
        LeaveReason::Dropped,
        LeaveReason::Timeout,
        LeaveReason::SlowConsumer,
        LeaveReason::ProtocolError,
        LeaveReason::Kicked,
        LeaveReason::RateLimited,
        LeaveReason::NodeLost,
    ];
    let doc = include_str!("../PROTOCOL.md");
    for reason in reasons {
        let wire = rmp_serde::to_vec(&reason).unwrap();
        assert_eq!(
            rmpv::decode::read_value(&mut &wire[..]).unwrap(),
            Value::from(reason.as_str())
        );
        assert!(
            doc.contains(&format!("| `{}` |", reason.as_str())),
            "PROTOCOL.md lists {}",
            reason.as_str()
        );
    }
}
