//! Document rooms through the testing kit, with `yrs` documents as the clients: the y-sync
//! handshake, concurrent edits converging, a late joiner, bad input refused with the document
//! untouched, awareness relayed and removed with its member, and the snapshot a cluster keeps.

use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use super::*;
use crate::game::testing::{Refused, TestRoom};
use crate::game::RoomTypes;
use parlor_protocol::ServerFrame;

fn room() -> TestRoom {
    let types = RoomTypes::new().add(TYPE, DocRoom::make);
    TestRoom::new(types, TYPE, Value::Nil).expect("the kit")
}

/// A client: its own document, kept in sync through the room.
struct Peer {
    id: SessionId,
    doc: Doc,
}

impl Peer {
    fn join(room: &mut TestRoom, name: &str) -> Self {
        let id = room.join(name).expect("joins");
        let mut peer = Peer {
            id,
            doc: Doc::new(),
        };
        let step1 = Message::Sync(SyncMessage::SyncStep1(peer.doc.transact().state_vector()));
        // The room answers in the request's `ok`: its step 2, its step 1, awareness.
        let answer = room
            .send(id, EVENT, Value::Binary(step1.encode_v1()))
            .expect("step 1 taken");
        let Some(Value::Array(messages)) = answer else {
            panic!("a step 1 is answered with messages: {answer:?}")
        };
        for message in messages {
            let Value::Binary(bytes) = message else {
                panic!("a y message is bytes")
            };
            peer.take(room, &bytes);
        }
        peer
    }

    fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("t");
        text.get_string(&self.doc.transact())
    }

    /// Takes in every `y` message the room sent it (its events).
    fn hear(&mut self, room: &mut TestRoom) {
        for frame in room.take_frames(self.id) {
            if let ServerFrame::Event(e) = frame {
                if e.event == EVENT {
                    let Value::Binary(bytes) = e.data else {
                        panic!("a y message is bytes")
                    };
                    self.take(room, &bytes);
                }
            }
        }
    }

    /// Takes in one `y` message, answering the room's step 1 with what it lacks.
    fn take(&mut self, room: &mut TestRoom, bytes: &[u8]) {
        match Message::decode_v1(bytes).expect("the room sends y messages") {
            Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                let update = Update::decode_v1(&u).expect("an update");
                self.doc
                    .transact_mut()
                    .apply_update(update)
                    .expect("applies");
            }
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let mine = self.doc.transact().encode_state_as_update_v1(&sv);
                let reply = Message::Sync(SyncMessage::SyncStep2(mine));
                room.send(self.id, EVENT, Value::Binary(reply.encode_v1()))
                    .expect("step 2 taken");
            }
            _ => {}
        }
    }

    /// One local edit, sent to the room as an update.
    fn edit(&mut self, room: &mut TestRoom, rng: &mut u64) {
        *rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (*rng >> 33) as u32;
        let before = self.doc.transact().state_vector();
        {
            let text = self.doc.get_or_insert_text("t");
            let mut txn = self.doc.transact_mut();
            let len = text.len(&txn);
            if len > 0 && r.is_multiple_of(4) {
                text.remove_range(&mut txn, r % len, 1);
            } else {
                let at = if len == 0 { 0 } else { r % (len + 1) };
                let c = char::from(b'a' + (r % 26) as u8).to_string();
                text.insert(&mut txn, at, &c);
            }
        }
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        let message = Message::Sync(SyncMessage::Update(update));
        room.send(self.id, EVENT, Value::Binary(message.encode_v1()))
            .expect("an update taken");
    }
}

/// The room's document as text, from its snapshot.
/// A document Ann joined and made `edits` random edits to (from `seed`).
fn edited_by_ann(seed: u64, edits: usize) -> (TestRoom, Peer) {
    let mut room = room();
    let mut ann = Peer::join(&mut room, "ann");
    ann.hear(&mut room);
    let mut rng = seed;
    for _ in 0..edits {
        ann.edit(&mut room, &mut rng);
    }
    (room, ann)
}

fn room_text(room: &mut TestRoom, peer: &Peer) -> String {
    // An awareness query is answered too (with nothing here: no one set any).
    let asked = Message::AwarenessQuery.encode_v1();
    let answer = room.send(peer.id, EVENT, Value::Binary(asked));
    assert_eq!(answer, Ok(Some(Value::Array(Vec::new()))));
    Peer::join(room, "probe").text()
}

#[test]
fn concurrent_edits_converge_and_a_late_joiner_gets_the_document() {
    let mut room = room();
    let mut ann = Peer::join(&mut room, "ann");
    let mut bob = Peer::join(&mut room, "bob");
    ann.hear(&mut room);
    bob.hear(&mut room);
    let (mut ra, mut rb) = (1u64, 2u64);
    for round in 0..300 {
        ann.edit(&mut room, &mut ra);
        bob.edit(&mut room, &mut rb);
        // Each hears the other late, sometimes: edits cross in flight.
        if round % 3 == 0 {
            ann.hear(&mut room);
        }
        if round % 5 == 0 {
            bob.hear(&mut room);
        }
    }
    ann.hear(&mut room);
    bob.hear(&mut room);
    assert!(!ann.text().is_empty());
    assert_eq!(ann.text(), bob.text(), "both converge");
    let text = ann.text();
    assert_eq!(
        room_text(&mut room, &ann),
        text,
        "a late joiner gets it whole"
    );
}

#[test]
fn bad_input_is_refused_with_a_reason_and_the_document_is_untouched() {
    let (mut room, ann) = edited_by_ann(7, 20);
    let before = room_text(&mut room, &ann);
    let refused = |result: Result<Option<Value>, Refused>| match result {
        Err(Refused {
            reason: Some(reason),
            ..
        }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Not a y-websocket message at all.
    let garbage = Value::Binary(vec![0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(
        refused(room.send(ann.id, EVENT, garbage)),
        "invalid_message"
    );
    // A sync update that is no Yjs update.
    let bad = Message::Sync(SyncMessage::Update(vec![9, 9, 9, 9, 9])).encode_v1();
    assert_eq!(
        refused(room.send(ann.id, EVENT, Value::Binary(bad))),
        "invalid_update"
    );
    // Too large.
    let big = Message::Sync(SyncMessage::Update(vec![0; 300 * 1024])).encode_v1();
    assert_eq!(
        refused(room.send(ann.id, EVENT, Value::Binary(big))),
        "update_too_large"
    );
    // Not bytes, and not the document's event.
    assert_eq!(
        refused(room.send(ann.id, EVENT, Value::from("text"))),
        "invalid_message"
    );
    assert_eq!(
        refused(room.send(ann.id, "chat", Value::Nil)),
        "invalid_message"
    );
    assert_eq!(
        room_text(&mut room, &ann),
        before,
        "the document is untouched"
    );
    room.check().expect("the registry's invariants");
}

#[test]
fn awareness_is_relayed_and_leaves_with_its_member() {
    let mut room = room();
    let mut ann = Peer::join(&mut room, "ann");
    let mut bob = Peer::join(&mut room, "bob");
    ann.hear(&mut room);
    bob.hear(&mut room);
    let mut mine = Awareness::new(Doc::new());
    mine.set_local_state_raw(r#"{"user":"ann","cursor":3}"#);
    let client = mine.client_id();
    let update = Message::Awareness(mine.update().expect("an update"));
    room.send(ann.id, EVENT, Value::Binary(update.encode_v1()))
        .expect("awareness taken");
    let heard = |room: &mut TestRoom, who: SessionId| -> Vec<(ClientID, String)> {
        room.take_frames(who)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Event(e) if e.event == EVENT => Some(e.data),
                _ => None,
            })
            .filter_map(|data| match data {
                Value::Binary(bytes) => match Message::decode_v1(&bytes).ok()? {
                    Message::Awareness(u) => Some(
                        u.clients
                            .into_iter()
                            .map(|(id, e)| (id, e.json.to_string()))
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                },
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert_eq!(
        heard(&mut room, bob.id),
        vec![(client, r#"{"user":"ann","cursor":3}"#.to_string())]
    );
    assert!(
        heard(&mut room, ann.id).is_empty(),
        "not echoed to its sender"
    );
    // Bob's provider says who he is first (every provider does, on connecting), then sends
    // on what it heard (y-websocket does): no news, so nothing goes on.
    let mut his = Awareness::new(Doc::new());
    his.set_local_state_raw(r#"{"user":"bob"}"#);
    let his = Message::Awareness(his.update().expect("an update")).encode_v1();
    room.send(bob.id, EVENT, Value::Binary(his)).expect("taken");
    assert_eq!(heard(&mut room, ann.id).len(), 1, "bob's own goes on");
    room.send(bob.id, EVENT, Value::Binary(update.encode_v1()))
        .expect("taken");
    assert!(
        heard(&mut room, ann.id).is_empty(),
        "an echo is not relayed"
    );
    // A newcomer hears who is there in the answer to its step 1.
    let cat = room.join("cat").expect("cat joins");
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    let Ok(Some(Value::Array(answer))) = room.send(cat, EVENT, Value::Binary(step1)) else {
        panic!("answered with messages")
    };
    let seen: Vec<(ClientID, String)> = answer
        .into_iter()
        .filter_map(|m| match m {
            Value::Binary(bytes) => match Message::decode_v1(&bytes).ok()? {
                Message::Awareness(u) => Some(u.clients),
                _ => None,
            },
            _ => None,
        })
        .flatten()
        .map(|(id, e)| (id, e.json.to_string()))
        .collect();
    assert!(
        seen.contains(&(client, r#"{"user":"ann","cursor":3}"#.to_string())),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 2, "ann's and bob's");
    // Ann leaves: her cursor goes from the others' screens.
    room.leave(ann.id);
    assert_eq!(heard(&mut room, bob.id), vec![(client, "null".to_string())]);
    assert_eq!(heard(&mut room, cat), vec![(client, "null".to_string())]);
    // She comes back (a new connection) and says the same as before, with her old clock: the
    // others see her again, since the room moves her clock past its removal.
    let back = room.join("ann").expect("back");
    room.send(back, EVENT, Value::Binary(update.encode_v1()))
        .expect("awareness taken");
    assert_eq!(
        heard(&mut room, bob.id),
        vec![(client, r#"{"user":"ann","cursor":3}"#.to_string())]
    );
}

#[test]
fn the_snapshot_carries_the_whole_document() {
    let (_room, ann) = edited_by_ann(3, 50);
    let mut logic = DocRoom::new(DocLimits::default());
    let mut ctx = Ctx::new(Vec::new(), None, std::time::Duration::ZERO);
    let state = {
        let doc = Doc::new();
        let update = ann
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        doc.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        update
    };
    logic
        .restore(&mut ctx, Value::Binary(state))
        .expect("restores");
    let Some(Value::Binary(snapshot)) = logic.snapshot() else {
        panic!("a snapshot")
    };
    let doc = Doc::new();
    doc.transact_mut()
        .apply_update(Update::decode_v1(&snapshot).unwrap())
        .unwrap();
    let text = doc.get_or_insert_text("t");
    assert_eq!(text.get_string(&doc.transact()), ann.text());
}

#[test]
fn a_member_speaks_for_a_bounded_number_of_awareness_clients() {
    use yrs::sync::awareness::AwarenessUpdateEntry;
    let mut room = room();
    let ann = Peer::join(&mut room, "ann");
    let bob = Peer::join(&mut room, "bob");
    let _ = room.take_frames(bob.id);
    // One message naming 20 clients: only the first MAX_CLIENTS_PER_MEMBER are taken.
    let clients = (1..=20u64)
        .map(|n| {
            (
                ClientID::new(n),
                AwarenessUpdateEntry {
                    clock: 1,
                    json: format!(r#"{{"n":{n}}}"#).into(),
                },
            )
        })
        .collect();
    let many = Message::Awareness(AwarenessUpdate { clients }).encode_v1();
    room.send(ann.id, EVENT, Value::Binary(many))
        .expect("taken");
    let relayed: usize = room
        .take_frames(bob.id)
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Event(e) if e.event == EVENT => Some(e.data),
            _ => None,
        })
        .filter_map(|data| match data {
            Value::Binary(bytes) => match Message::decode_v1(&bytes).ok()? {
                Message::Awareness(u) => Some(u.clients.len()),
                _ => None,
            },
            _ => None,
        })
        .sum();
    assert_eq!(relayed, MAX_CLIENTS_PER_MEMBER);
}
