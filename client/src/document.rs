//! `SharedDoc` (feature `yjs`): a Yjs document (`yrs`) and its awareness, kept in sync with a
//! Parlor document room (room type `yjs`, PROTOCOL.md section 4, documents) through a
//! reconnecting `Parlor` session.
//!
//! It speaks y-sync in `emit`s of event `y`, as `web/parlor-yjs.js` does: `open` joins (or
//! makes) the room and syncs (its step 1 is answered in the request's data with the room's
//! step 2 and step 1, which it answers with its own step 2); `edit` changes the document and
//! sends the update; `handle` takes in what the session heard (other editors' updates and
//! awareness) and says when a new sync is needed: after a reconnect that could not replay the
//! room, or when an edit could not be sent (it stays in the document, and the next sync sends
//! what the room lacks, so nothing is lost). A reader (the token's read-only claim) is told so
//! on its first edit (`is_read_only`) and answers no step 1 after that.

use parlor_protocol::{ClientFrame, ErrorCode, RoomOptions, Value};
use yrs::sync::{Awareness, AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Transact, TransactionMut, Update};

use crate::session::{Answer, Event, JoinOptions, Parlor};
use crate::{ClientError, Result};

/// The room type of documents, and the event their messages travel in.
pub const DOCUMENT_TYPE: &str = "yjs";
const EVENT: &str = "y";

/// What `SharedDoc::handle` made of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Not about this document.
    NotMine,
    /// An update or awareness of this document, applied.
    Applied,
    /// Updates may have been missed (a reconnect that could not replay the room) or an edit
    /// was not sent: call `sync`.
    SyncNeeded,
    /// The session is no longer in the document's room.
    Lost,
}

/// A Yjs document kept in sync with a document room.
pub struct SharedDoc {
    parlor: Parlor,
    room: String,
    awareness: Awareness,
    read_only: bool,
    /// An edit or awareness change that did not reach the room: the next sync sends it.
    unsent: bool,
}

impl SharedDoc {
    /// Opens document `room` with `doc`: joins the room (making it as a `yjs` room if there is
    /// none) and syncs.
    pub async fn open(parlor: Parlor, room: &str, doc: Doc) -> Result<Self> {
        let options = RoomOptions {
            room_type: Some(DOCUMENT_TYPE.to_owned()),
            ..RoomOptions::default()
        };
        // Made, or there already: joined. A room gone between the two is made again.
        let mut tries = 0;
        loop {
            tries += 1;
            match parlor.create(Some(room), options.clone()).await {
                Ok(_) => break,
                Err(ClientError::Refused(e)) if e.code == ErrorCode::RoomExists => {
                    match parlor.join_with(room, JoinOptions::existing()).await {
                        Ok(_) => break,
                        Err(ClientError::Refused(e))
                            if e.code == ErrorCode::RoomNotFound && tries < 3 => {}
                        Err(err) => return Err(err),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        let mut shared = SharedDoc {
            parlor,
            room: room.to_owned(),
            awareness: Awareness::new(doc),
            read_only: false,
            unsent: false,
        };
        shared.sync().await?;
        Ok(shared)
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    /// The awareness: this client's state and every other editor's it heard.
    pub fn awareness(&self) -> &Awareness {
        &self.awareness
    }

    /// The room refused an edit as a reader's (`read_only`): edits stay local.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Syncs with the room: sends this document's state vector (step 1), applies what the room
    /// has that it lacks (the answer's step 2) and sends what the room lacks (its step 2 to the
    /// room's step 1).
    pub async fn sync(&mut self) -> Result<()> {
        let state = self.doc().transact().state_vector();
        let answer = self
            .send(Message::Sync(SyncMessage::SyncStep1(state)))
            .await?;
        let mut replies = Vec::new();
        if let Answer::Data(Value::Array(messages)) = answer {
            for message in messages {
                if let Value::Binary(bytes) = message {
                    replies.extend(self.take(&bytes)?);
                }
            }
        }
        for reply in replies {
            match self.send(reply).await {
                // A reader's step 2: its own edits stay its own; the sync is done.
                Err(ClientError::Refused(e)) if e.reason.as_deref() == Some("read_only") => {}
                other => {
                    other?;
                }
            }
        }
        self.unsent = false;
        // The local awareness state goes with every sync, as a provider's does on connecting.
        if self.awareness.local_state_raw().is_some() {
            self.send_awareness().await?;
        }
        Ok(())
    }

    /// Changes the document in one transaction and sends the change. If it cannot be sent
    /// (the connection is down, a rate limit) the change stays in the document, `handle` asks
    /// for a sync once the session is back, and the error is returned; a reader's change is
    /// refused (`room_refused`, reason `read_only`) and stays local.
    pub async fn edit<R>(&mut self, change: impl FnOnce(&mut TransactionMut) -> R) -> Result<R> {
        if self.read_only {
            // Known a reader: nothing changes, nothing is sent.
            return Err(ClientError::Unexpected(format!(
                "this session only reads document {:?} (its edits were refused `read_only`)",
                self.room
            )));
        }
        let before = self.doc().transact().state_vector();
        let result = {
            let mut txn = self.doc().transact_mut();
            change(&mut txn)
        };
        let update = self.doc().transact().encode_state_as_update_v1(&before);
        self.send(Message::Sync(SyncMessage::Update(update)))
            .await
            .map(|_| result)
    }

    /// Sets this client's awareness state (JSON, e.g. `{"user":{"name":"ann"}}`; `None`
    /// removes it) and sends it.
    pub async fn set_local_state(&mut self, state: Option<&str>) -> Result<()> {
        match state {
            Some(json) => {
                serde_json::from_str::<serde_json::Value>(json).map_err(|err| {
                    ClientError::Unexpected(format!("an awareness state is JSON: {err}"))
                })?;
                self.awareness.set_local_state_raw(json);
            }
            None => self.awareness.clean_local_state(),
        }
        self.send_awareness().await
    }

    /// Takes in an event the session heard.
    pub fn handle(&mut self, event: &Event) -> Result<Handled> {
        match event {
            Event::RoomEvent(e) if e.room == self.room && e.event == EVENT => {
                if let Value::Binary(bytes) = &e.data {
                    self.take(bytes)?;
                }
                Ok(Handled::Applied)
            }
            // A snapshot of the room after a resume that could not replay it: updates were
            // missed.
            Event::Joined(joined) if joined.room == self.room => Ok(Handled::SyncNeeded),
            Event::Resumed(resumed) if resumed.lost.contains(&self.room) => Ok(Handled::Lost),
            Event::Resumed(_) if self.unsent => Ok(Handled::SyncNeeded),
            Event::Reset(reset) if reset.lost.contains(&self.room) => Ok(Handled::Lost),
            Event::Left { room, .. } if *room == self.room => Ok(Handled::Lost),
            _ => Ok(Handled::NotMine),
        }
    }

    /// Applies one y-websocket message from the room; returns what to answer (a step 2 to a
    /// step 1).
    fn take(&mut self, bytes: &[u8]) -> Result<Vec<Message>> {
        let bad = |err: &dyn std::fmt::Display| {
            ClientError::Unexpected(format!("an unreadable document message: {err}"))
        };
        let message = Message::decode_v1(bytes).map_err(|e| bad(&e))?;
        match message {
            Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                let update = Update::decode_v1(&update).map_err(|e| bad(&e))?;
                self.doc()
                    .transact_mut()
                    .apply_update(update)
                    .map_err(|e| bad(&e))?;
            }
            Message::Sync(SyncMessage::SyncStep1(state)) if !self.read_only => {
                let missing = self.doc().transact().encode_state_as_update_v1(&state);
                return Ok(vec![Message::Sync(SyncMessage::SyncStep2(missing))]);
            }
            Message::Awareness(update) => {
                self.awareness.apply_update(update).map_err(|e| bad(&e))?;
            }
            _ => {}
        }
        Ok(Vec::new())
    }

    async fn send_awareness(&mut self) -> Result<()> {
        let mine = self.awareness.client_id();
        let update: AwarenessUpdate = self
            .awareness
            .update_with_clients([mine])
            .map_err(|err| ClientError::Unexpected(format!("awareness: {err}")))?;
        self.send(Message::Awareness(update)).await.map(|_| ())
    }

    /// Sends one message to the room, noting a reader's refusal and a message not taken.
    async fn send(&mut self, message: Message) -> Result<Answer> {
        let frame = ClientFrame::Emit {
            reference: None,
            room: self.room.clone(),
            event: EVENT.to_owned(),
            data: Value::Binary(message.encode_v1()),
            echo: false,
        };
        match self.parlor.request(frame).await {
            Ok(answer) => Ok(answer),
            Err(ClientError::Refused(e)) if e.reason.as_deref() == Some("read_only") => {
                self.read_only = true;
                Err(ClientError::Refused(e))
            }
            Err(err) => {
                self.unsent = true;
                Err(err)
            }
        }
    }
}
