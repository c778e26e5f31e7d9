use super::*;

fn id(n: u128) -> SessionId {
    SessionId::from_uuid(uuid::Uuid::from_u128(n))
}

fn msg(offset: u64, skip: Option<SessionId>) -> RoomMessage {
    RoomMessage {
        offset,
        skip,
        frame: Bytes::from(format!("f{offset}")),
    }
}

/// Collects deliveries as "<member>:<frame>".
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn sink(&mut self) -> impl FnMut(SessionId, &Bytes) + '_ {
        |to, frame| {
            let n = to.as_uuid().as_u128();
            self.0
                .push(format!("{n}:{}", String::from_utf8_lossy(frame)));
        }
    }
    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

#[test]
fn frames_go_once_in_order_and_skip_their_sender() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    let added = rooms.add_member("r", id(1), 5, &mut seen.sink());
    assert!(added.subscribe);
    rooms.add_member("r", id(2), 5, &mut seen.sink());
    assert_eq!(
        rooms.on_frame("r", msg(5, Some(id(1))), &mut seen.sink()),
        None
    );
    assert_eq!(
        rooms.on_frame("r", msg(5, None), &mut seen.sink()),
        None,
        "a repeat"
    );
    rooms.on_frame("r", msg(6, None), &mut seen.sink());
    assert_eq!(seen.take(), ["2:f5", "1:f6", "2:f6"]);
}

#[test]
fn a_gap_is_filled_before_later_frames_go_out() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    rooms.add_member("r", id(1), 0, &mut seen.sink());
    let fill = rooms.on_frame("r", msg(3, None), &mut seen.sink());
    assert_eq!(
        fill,
        Some(Fill {
            room: "r".into(),
            from: 0,
            to: Some(3)
        })
    );
    assert_eq!(
        rooms.on_frame("r", msg(4, None), &mut seen.sink()),
        None,
        "one fill at a time"
    );
    assert!(seen.take().is_empty());
    let more = rooms.on_fill(
        "r",
        vec![msg(0, None), msg(1, None), msg(2, None)],
        &mut seen.sink(),
    );
    assert_eq!(more, None);
    assert_eq!(seen.take(), ["1:f0", "1:f1", "1:f2", "1:f3", "1:f4"]);
    assert_eq!(rooms.lost, 0);
}

#[test]
fn frames_the_stream_no_longer_holds_are_skipped_and_counted() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    rooms.add_member("r", id(1), 0, &mut seen.sink());
    rooms.on_frame("r", msg(10, None), &mut seen.sink());
    rooms.on_fill("r", vec![msg(8, None), msg(9, None)], &mut seen.sink());
    assert_eq!(seen.take(), ["1:f8", "1:f9", "1:f10"]);
    assert_eq!(rooms.lost, 8);
    assert_eq!(rooms.next_offset("r"), Some(11));
}

#[test]
fn a_member_joining_behind_the_node_gets_the_frames_since_its_snapshot() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    rooms.add_member("r", id(1), 0, &mut seen.sink());
    for offset in 0..4 {
        rooms.on_frame("r", msg(offset, Some(id(2))), &mut seen.sink());
    }
    rooms.on_frame("r", msg(4, None), &mut seen.sink());
    seen.take();
    // Member 2's snapshot was taken at offset 2; frames 2 and 3 skip it, 4 does not.
    let added = rooms.add_member("r", id(2), 2, &mut seen.sink());
    assert!(!added.subscribe);
    assert_eq!(seen.take(), ["2:f4"]);
    rooms.on_frame("r", msg(5, None), &mut seen.sink());
    assert_eq!(seen.take(), ["1:f5", "2:f5"]);
}

#[test]
fn a_member_joining_ahead_of_the_node_waits_for_its_offset() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    rooms.add_member("r", id(1), 0, &mut seen.sink());
    rooms.add_member("r", id(2), 2, &mut seen.sink());
    for offset in 0..3 {
        rooms.on_frame("r", msg(offset, None), &mut seen.sink());
    }
    assert_eq!(seen.take(), ["1:f0", "1:f1", "1:f2", "2:f2"]);
}

#[test]
fn the_last_member_leaving_forgets_the_room() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    rooms.add_member("r", id(1), 0, &mut seen.sink());
    rooms.add_member("r", id(2), 0, &mut seen.sink());
    assert!(!rooms.remove_member("r", id(1)));
    assert!(rooms.remove_member("r", id(2)));
    assert!(rooms.is_empty());
    assert_eq!(rooms.on_frame("r", msg(0, None), &mut seen.sink()), None);
    assert!(seen.take().is_empty());
}

#[test]
fn catching_up_reads_to_the_end_once() {
    let mut rooms = LocalRooms::default();
    let mut seen = Seen::default();
    rooms.add_member("r", id(1), 7, &mut seen.sink());
    let fill = rooms.catch_up("r");
    assert_eq!(
        fill,
        Some(Fill {
            room: "r".into(),
            from: 7,
            to: None
        })
    );
    assert_eq!(rooms.catch_up("r"), None);
    rooms.on_fill("r", vec![msg(7, None)], &mut seen.sink());
    assert_eq!(seen.take(), ["1:f7"]);
    assert!(rooms.catch_up("r").is_some());
}
