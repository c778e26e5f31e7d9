use parlor_protocol::{decode_server, EventFrame, LeaveReason, PresenceFrame, PresenceStatus};

use super::*;

fn bulk(s: &str) -> Reply {
    Reply::BulkString(s.as_bytes().to_vec())
}

#[test]
fn room_messages_are_read_with_or_without_a_skip() {
    let sid = SessionId::new_random();
    let mut payload = format!("42\n{sid}\n").into_bytes();
    payload.extend_from_slice(b"\x81\x0a\n");
    let payload = Bytes::from(payload);
    let message = parse_room_message(&payload).expect("parses");
    assert_eq!(message.offset, 42);
    assert_eq!(message.skip, Some(sid));
    assert_eq!(&message.frame[..], b"\x81\x0a\n");
    let message = parse_room_message(&Bytes::from_static(b"0\n\nxyz")).expect("parses");
    assert_eq!((message.offset, message.skip), (0, None));
    assert_eq!(parse_room_message(&Bytes::from_static(b"x\n\nxyz")), None);
    assert_eq!(
        parse_room_message(&Bytes::from_static(b"1\nnot-an-id\nxyz")),
        None
    );
}

#[test]
fn inbox_messages_are_read() {
    let sid = SessionId::new_random();
    assert_eq!(
        parse_inbox(&Bytes::from(format!("d\n{sid}\nab\ncd"))),
        Some(InboxMessage::Direct {
            to: sid,
            frame: Bytes::from_static(b"ab\ncd")
        })
    );
    assert_eq!(
        parse_inbox(&Bytes::from(format!("r\n{sid}"))),
        Some(InboxMessage::ResumedElsewhere(sid))
    );
    assert_eq!(
        parse_inbox(&Bytes::from(format!(
            "l\n{sid}\nroom\nwith newline\nkicked"
        ))),
        Some(InboxMessage::LeftRoom {
            session: sid,
            room: "room\nwith newline".into(),
            reason: LeaveReason::Kicked
        })
    );
    assert_eq!(parse_inbox(&Bytes::from(format!("x\n{sid}"))), None);
}

/// What `parlor.lua`'s `splice` does: the last byte (offset 0) becomes the offset's encoding.
fn splice(body: &Bytes, offset: u64) -> Vec<u8> {
    let mut out = body[..body.len() - 1].to_vec();
    out.extend_from_slice(&encode_value(&offset));
    out
}

#[test]
fn a_frame_with_its_offset_spliced_in_reads_as_that_offset() {
    let frames = [
        ServerFrame::Event(EventFrame {
            room: "r".into(),
            from: SessionId::new_random(),
            event: "e".into(),
            data: Value::from(vec![Value::from(1), Value::from("x")]),
            offset: 0,
        }),
        ServerFrame::Presence(PresenceFrame {
            room: "r".into(),
            session: SessionId::new_random(),
            status: PresenceStatus::Left,
            reason: Some(LeaveReason::NodeLost),
            user: Some("u".into()),
            offset: 0,
        }),
    ];
    for frame in frames {
        let body = with_offset_to_fill(&frame);
        for offset in [0, 1, 127, 128, 65_535, 1 << 40] {
            let read = decode_server(&splice(&body, offset), 32).expect("decodes");
            assert_eq!(read.room_offset().map(|(_, o)| o), Some(offset));
        }
    }
}

#[test]
fn refusals_become_request_errors() {
    let reply = Reply::Array(vec![
        bulk("err"),
        bulk("room_full"),
        bulk("lobby"),
        bulk("4"),
    ]);
    match answer(reply) {
        Ok(Answer::Refused(RequestError::RoomFull { room, max })) => {
            assert_eq!((room.as_str(), max), ("lobby", 4));
        }
        other => panic!("{other:?}"),
    }
    assert!(answer(Reply::Array(vec![bulk("err"), bulk("what")])).is_err());
    assert!(answer(Reply::Int(3)).is_err());
}

#[test]
fn a_snapshot_lists_members_in_join_order() {
    let (a, b) = (SessionId::new_random(), SessionId::new_random());
    let fields = Reply::Array(vec![
        bulk("4"),
        bulk("0"),
        bulk("2"),
        bulk(&b.to_string()),
        bulk("0"),
        Reply::BulkString(vec![0x80]),
        Reply::BulkString(vec![0x80]),
        bulk("3"),
        bulk("ep"),
        bulk("17"),
        bulk("0"),
        bulk("9"),
        bulk(""),
    ]);
    let rest = vec![
        bulk("room"),
        fields,
        bulk(&a.to_string()),
        bulk("7|1|alice"),
        bulk(&b.to_string()),
        bulk("2|0|"),
    ];
    let snapshot = Snapshot::parse(&rest).expect("parses");
    let joined = snapshot.joined(None);
    assert_eq!(joined.members, vec![b, a]);
    assert_eq!(joined.owner, Some(b));
    assert_eq!(joined.away, vec![a]);
    assert_eq!(joined.users.get(&a).map(String::as_str), Some("alice"));
    assert_eq!(
        (joined.version, joined.offset, joined.epoch.as_str()),
        (3, 17, "ep")
    );
    assert!(!joined.locked);
}

#[test]
fn stream_entries_carry_their_offsets() {
    let sid = SessionId::new_random();
    let entry = |id: &str, skip: &str| {
        Reply::Array(vec![
            bulk(id),
            Reply::Array(vec![bulk("f"), bulk("frame"), bulk("s"), bulk(skip)]),
        ])
    };
    let read = parse_stream(Reply::Array(vec![
        entry("0-5", ""),
        entry("0-6", &sid.to_string()),
    ]))
    .expect("parses");
    assert_eq!(read[0].offset, 4);
    assert_eq!(read[1].skip, Some(sid));
    assert!(parse_stream(Reply::Array(vec![entry("0-0", "")])).is_err());
}
