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
    fn sink(&mut self) -> impl FnMut(SessionId, &(), &Bytes) + '_ {
        |to, _, frame| {
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
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    let added = rooms.add_member("r", "e", id(1), (), 5, &mut seen.sink());
    assert!(added.subscribe);
    rooms.add_member("r", "e", id(2), (), 5, &mut seen.sink());
    assert_eq!(
        rooms.on_frame("r", "e", msg(5, Some(id(1))), &mut seen.sink()),
        None
    );
    assert_eq!(
        rooms.on_frame("r", "e", msg(5, None), &mut seen.sink()),
        None,
        "a repeat"
    );
    rooms.on_frame("r", "e", msg(6, None), &mut seen.sink());
    assert_eq!(seen.take(), ["2:f5", "1:f6", "2:f6"]);
}

/// A channel message's frames go member by member, each member's in offset order (a session
/// gets them back to back and writes them at once); repeats in it are dropped, a skip kept.
#[test]
fn a_messages_frames_go_member_by_member() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 5, &mut seen.sink());
    rooms.add_member("r", "e", id(2), (), 5, &mut seen.sink());
    rooms.on_frame("r", "e", msg(5, None), &mut seen.sink());
    seen.take();
    let fill = rooms.on_frames(
        "r",
        "e",
        [
            msg(5, None),
            msg(6, None),
            msg(7, Some(id(2))),
            msg(8, None),
        ],
        &mut seen.sink(),
    );
    assert_eq!(fill, None);
    assert_eq!(seen.take(), ["1:f6", "1:f7", "1:f8", "2:f6", "2:f8"]);
}

#[test]
fn a_gap_is_filled_before_later_frames_go_out() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 0, &mut seen.sink());
    let fill = rooms.on_frame("r", "e", msg(3, None), &mut seen.sink());
    assert_eq!(
        fill,
        Some(Fill {
            room: "r".into(),
            epoch: "e".into(),
            from: 0,
            to: Some(3)
        })
    );
    assert_eq!(
        rooms.on_frame("r", "e", msg(4, None), &mut seen.sink()),
        None,
        "one fill at a time"
    );
    assert!(seen.take().is_empty());
    let fill = fill.expect("a fill");
    let more = rooms.on_fill(
        &fill,
        "e",
        vec![msg(0, None), msg(1, None), msg(2, None)],
        &mut seen.sink(),
    );
    assert_eq!(more, None);
    assert_eq!(seen.take(), ["1:f0", "1:f1", "1:f2", "1:f3", "1:f4"]);
    assert_eq!(rooms.lost, 0);
}

#[test]
fn frames_the_stream_no_longer_holds_are_skipped_and_counted() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 0, &mut seen.sink());
    let fill = rooms
        .on_frame("r", "e", msg(10, None), &mut seen.sink())
        .expect("a fill");
    rooms.on_fill(
        &fill,
        "e",
        vec![msg(8, None), msg(9, None)],
        &mut seen.sink(),
    );
    assert_eq!(seen.take(), ["1:f8", "1:f9", "1:f10"]);
    assert_eq!(rooms.lost, 8);
    assert_eq!(rooms.next_offset("r"), Some(11));
}

#[test]
fn a_member_joining_behind_the_node_gets_the_frames_since_its_snapshot() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 0, &mut seen.sink());
    for offset in 0..4 {
        rooms.on_frame("r", "e", msg(offset, Some(id(2))), &mut seen.sink());
    }
    rooms.on_frame("r", "e", msg(4, None), &mut seen.sink());
    seen.take();
    // Member 2's snapshot was taken at offset 2; frames 2 and 3 skip it, 4 does not.
    let added = rooms.add_member("r", "e", id(2), (), 2, &mut seen.sink());
    assert!(!added.subscribe);
    assert_eq!(seen.take(), ["2:f4"]);
    rooms.on_frame("r", "e", msg(5, None), &mut seen.sink());
    assert_eq!(seen.take(), ["1:f5", "2:f5"]);
}

#[test]
fn a_member_joining_ahead_of_the_node_waits_for_its_offset() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 0, &mut seen.sink());
    rooms.add_member("r", "e", id(2), (), 2, &mut seen.sink());
    for offset in 0..3 {
        rooms.on_frame("r", "e", msg(offset, None), &mut seen.sink());
    }
    assert_eq!(seen.take(), ["1:f0", "1:f1", "1:f2", "2:f2"]);
}

#[test]
fn frames_held_behind_a_gap_are_bounded() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 0, &mut seen.sink());
    // Offset 0 never comes; the fill asked for does not answer.
    for offset in 1..=MAX_AHEAD as u64 {
        rooms.on_frame("r", "e", msg(offset, None), &mut seen.sink());
    }
    assert!(seen.take().is_empty(), "held behind the gap");
    rooms.on_frame("r", "e", msg(MAX_AHEAD as u64 + 1, None), &mut seen.sink());
    assert_eq!(rooms.lost, 1, "the gap is given up");
    assert_eq!(seen.take().len(), MAX_AHEAD + 1);
    assert_eq!(rooms.next_offset("r"), Some(MAX_AHEAD as u64 + 2));
}

#[test]
fn the_last_member_leaving_forgets_the_room() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 0, &mut seen.sink());
    rooms.add_member("r", "e", id(2), (), 0, &mut seen.sink());
    assert_eq!(rooms.remove_member("r", id(1)), None);
    assert_eq!(rooms.remove_member("r", id(2)).as_deref(), Some("e"));
    assert!(rooms.is_empty());
    assert_eq!(
        rooms.on_frame("r", "e", msg(0, None), &mut seen.sink()),
        None
    );
    assert!(seen.take().is_empty());
}

#[test]
fn catching_up_reads_to_the_end_once() {
    let mut rooms = LocalRooms::<()>::default();
    let mut seen = Seen::default();
    rooms.add_member("r", "e", id(1), (), 7, &mut seen.sink());
    let fill = rooms.catch_up("r");
    assert_eq!(
        fill,
        Some(Fill {
            room: "r".into(),
            epoch: "e".into(),
            from: 7,
            to: None
        })
    );
    assert_eq!(rooms.catch_up("r"), None);
    let fill = fill.expect("a fill");
    rooms.on_fill(&fill, "e", vec![msg(7, None)], &mut seen.sink());
    assert_eq!(seen.take(), ["1:f7"]);
    assert!(rooms.catch_up("r").is_some());
}

mod props {
    use proptest::prelude::*;

    use super::*;

    /// What one run of the property does: the frames 0..total are published; the channel
    /// brings the node those not in `dropped`, in order; every fill asked for is answered,
    /// after `delay` more channel messages, from a stream that no longer holds offsets below
    /// `trimmed`; at the end the node catches up with the stream.
    fn run(
        total: u64,
        dropped: &[bool],
        delay: usize,
        trimmed: u64,
        froms: &[u64],
    ) -> (Vec<Vec<u64>>, u64) {
        let mut rooms = LocalRooms::<()>::default();
        let mut got: Vec<Vec<u64>> = vec![Vec::new(); froms.len()];
        let mut record = |to: SessionId, _: &(), frame: &Bytes| {
            let text = String::from_utf8_lossy(frame);
            let offset: u64 = text.trim_start_matches('f').parse().expect("an offset");
            got[to.as_uuid().as_u128() as usize].push(offset);
        };
        for (i, from) in froms.iter().enumerate() {
            rooms.add_member("r", "e", id(i as u128), (), *from, &mut record);
        }
        let stream = |from: u64, to: Option<u64>| -> Vec<RoomMessage> {
            (from.max(trimmed)..to.unwrap_or(total).min(total))
                .map(|o| msg(o, None))
                .collect()
        };
        let mut pending: Vec<(usize, Fill)> = Vec::new();
        let mut step = 0;
        for offset in 0..total {
            step += 1;
            if !dropped.get(offset as usize).copied().unwrap_or(false) {
                if let Some(fill) = rooms.on_frame("r", "e", msg(offset, None), &mut record) {
                    pending.push((step + delay, fill));
                }
            }
            while let Some(index) = pending.iter().position(|(due, _)| *due <= step) {
                let (_, fill) = pending.remove(index);
                if let Some(more) =
                    rooms.on_fill(&fill, "e", stream(fill.from, fill.to), &mut record)
                {
                    pending.push((step + delay, more));
                }
            }
        }
        for (_, fill) in std::mem::take(&mut pending) {
            if let Some(more) = rooms.on_fill(&fill, "e", stream(fill.from, fill.to), &mut record) {
                pending.push((0, more));
            }
        }
        while let Some((_, fill)) = pending.pop() {
            if let Some(more) = rooms.on_fill(&fill, "e", stream(fill.from, fill.to), &mut record) {
                pending.push((0, more));
            }
        }
        if let Some(fill) = rooms.catch_up("r") {
            rooms.on_fill(&fill, "e", stream(fill.from, fill.to), &mut record);
        }
        (got, rooms.lost)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// With every frame still in the stream, each member gets every offset from its own
        /// on, once, in order, however many the channel dropped and however late fills come.
        #[test]
        fn nothing_is_lost_while_the_stream_holds_it(
            total in 1u64..60,
            dropped in proptest::collection::vec(any::<bool>(), 60),
            delay in 0usize..5,
            mut froms in proptest::collection::vec(0u64..5, 1..4),
        ) {
            // Redis answers a node's joins in order, so later members have later snapshots.
            froms.sort_unstable();
            let (got, lost) = run(total, &dropped, delay, 0, &froms);
            prop_assert_eq!(lost, 0);
            let start = froms[0];
            for (member, from) in froms.iter().enumerate() {
                let want: Vec<u64> = ((*from).max(start)..total).collect();
                prop_assert_eq!(&got[member], &want, "member {} from {}", member, from);
            }
        }

        /// With the stream trimmed, what a member gets still only goes up, and every frame it
        /// does not get is counted as lost.
        #[test]
        fn what_the_stream_lost_is_counted(
            total in 1u64..60,
            dropped in proptest::collection::vec(any::<bool>(), 60),
            delay in 0usize..5,
            trimmed in 0u64..60,
        ) {
            // The stream always keeps the newest frame.
            let trimmed = trimmed.min(total - 1);
            let (got, lost) = run(total, &dropped, delay, trimmed, &[0]);
            prop_assert!(got[0].windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(got[0].len() as u64 + lost, total);
        }
    }
}
