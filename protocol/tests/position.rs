//! `RoomPosition` follows a room's frames: `joined` sets it, room frames move it, frames of other
//! rooms and other kinds leave it alone, and a frame already passed is reported as such.

use parlor_protocol::*;

fn event(room: &str, offset: u64) -> ServerFrame {
    ServerFrame::Event(EventFrame {
        room: room.into(),
        from: SessionId::NIL,
        event: "e".into(),
        data: Value::Nil,
        offset,
    })
}

fn joined(room: &str, epoch: &str, offset: u64) -> ServerFrame {
    ServerFrame::Joined(JoinedFrame {
        reference: None,
        room: room.into(),
        members: vec![],
        owner: None,
        max_members: 4,
        locked: false,
        locked_by_owner: false,
        private: false,
        metadata: Metadata::new(),
        state: Document::new(),
        version: 0,
        epoch: epoch.into(),
        offset,
        users: Default::default(),
        away: vec![],
        room_type: None,
    })
}

#[test]
fn a_position_follows_its_room_and_spots_repeats() {
    let ServerFrame::Joined(j) = joined("r", "e1", 7) else {
        unreachable!()
    };
    let mut position = RoomPosition::from_joined(&j);
    assert_eq!((position.epoch.as_str(), position.offset), ("e1", 7));
    assert_eq!(position.advance(&event("r", 7)), Some(true));
    // Offsets may skip (frames not addressed to this member); the position jumps with them.
    assert_eq!(position.advance(&event("r", 9)), Some(true));
    assert_eq!(position.offset, 10);
    assert_eq!(
        position.advance(&event("r", 8)),
        Some(false),
        "already passed"
    );
    assert_eq!(position.advance(&event("other", 50)), None);
    assert_eq!(
        position.advance(&ServerFrame::Ok {
            reference: 1,
            data: None,
        }),
        None
    );
    assert_eq!(position.offset, 10);
    // A snapshot starts it afresh, even backwards in a new epoch.
    assert_eq!(position.advance(&joined("r", "e2", 3)), Some(true));
    assert_eq!((position.epoch.as_str(), position.offset), ("e2", 3));
    assert_eq!(position.advance(&joined("other", "x", 0)), None);
}
