//! A Rust editor of a Parlor document room: a `parlor_client::Client` and its own `yrs`
//! document, speaking y-sync in `emit`s of event `y` (PROTOCOL.md, documents). Shared by the
//! cluster and the documents tests.

use parlor_client::protocol::{ClientFrame, ServerFrame, Value};
use parlor_client::Client;

use super::wait::within;

/// An editor: a client and its own Yjs document, kept in sync through a `yjs` room.
pub struct Editor {
    pub client: Client,
    pub doc: yrs::Doc,
    room: String,
    next_ref: u64,
}

impl Editor {
    /// An editor of document (room) `room` through `client`, a member of it.
    pub fn new(client: Client, room: &str) -> Self {
        Editor {
            client,
            doc: yrs::Doc::new(),
            room: room.to_owned(),
            next_ref: 1,
        }
    }

    pub fn text(&self) -> String {
        use yrs::{GetString, Transact};
        let text = self.doc.get_or_insert_text("t");
        text.get_string(&self.doc.transact())
    }

    /// Takes in a `y` message the room sent; a step 1 is answered (later) with what it lacks.
    fn take(&mut self, data: Value, replies: &mut Vec<Vec<u8>>) {
        use yrs::sync::{Message, SyncMessage};
        use yrs::updates::decoder::Decode;
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Transact, Update};
        let Value::Binary(bytes) = data else { return };
        match Message::decode_v1(&bytes) {
            Ok(Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u))) => {
                if let Ok(update) = Update::decode_v1(&u) {
                    let _ = self.doc.transact_mut().apply_update(update);
                }
            }
            Ok(Message::Sync(SyncMessage::SyncStep1(sv))) => {
                let mine = self.doc.transact().encode_state_as_update_v1(&sv);
                replies.push(Message::Sync(SyncMessage::SyncStep2(mine)).encode_v1());
            }
            _ => {}
        }
    }

    /// Sends one y message and waits for its answer, taking in what arrives meanwhile.
    pub async fn send(&mut self, bytes: Vec<u8>) -> ServerFrame {
        let mut pending = vec![bytes];
        let mut last = None;
        while let Some(bytes) = pending.pop() {
            let reference = self.next_ref;
            self.next_ref += 1;
            self.client
                .send(&ClientFrame::Emit {
                    reference: Some(reference),
                    room: self.room.clone(),
                    event: "y".into(),
                    data: Value::Binary(bytes),
                    echo: false,
                })
                .await
                .expect("sent");
            let answer = within(20, "the document's answer", async {
                loop {
                    match self.client.next_frame().await.expect("frame") {
                        ServerFrame::Event(e) if e.event == "y" => self.take(e.data, &mut pending),
                        ServerFrame::Direct(d) if d.event == "y" => self.take(d.data, &mut pending),
                        f @ ServerFrame::Ok { reference: r, .. } if r == reference => return f,
                        ServerFrame::Error(e) if e.reference == Some(reference) => {
                            return ServerFrame::Error(e)
                        }
                        _ => {}
                    }
                }
            })
            .await;
            // A step 1 is answered with the room's messages (its step 2, its step 1).
            if let ServerFrame::Ok {
                data: Some(Value::Array(messages)),
                ..
            } = &answer
            {
                for message in messages.clone() {
                    self.take(message, &mut pending);
                }
            }
            last.get_or_insert(answer);
        }
        last.expect("an answer")
    }

    /// Starts the sync (step 1), as y-websocket does on connecting.
    pub async fn sync(&mut self) -> ServerFrame {
        use yrs::sync::{Message, SyncMessage};
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Transact};
        let sv = self.doc.transact().state_vector();
        self.send(Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1())
            .await
    }

    /// Appends `mark` to the text and sends the update; `Ok` once the home acknowledged it.
    pub async fn append(&mut self, mark: &str) -> ServerFrame {
        use yrs::sync::{Message, SyncMessage};
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Text, Transact};
        let before = self.doc.transact().state_vector();
        {
            let text = self.doc.get_or_insert_text("t");
            let mut txn = self.doc.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, mark);
        }
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.send(Message::Sync(SyncMessage::Update(update)).encode_v1())
            .await
    }
}
