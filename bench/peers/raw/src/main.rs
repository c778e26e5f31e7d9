//! The raw floor: the least a WebSocket fan-out server can do with Parlor's wire format. One
//! tokio task reads each connection, rooms are a map under a mutex, an emit is encoded once
//! and its `Bytes` pushed to each member's bounded channel, and one task per connection writes.
//! No actors, no registry, no limits beyond the channel bound, no heartbeat.
//!
//!     parlor-raw-floor [ADDR]    (default 127.0.0.1:8090)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parlor_protocol::{
    decode_client, encode_server, ClientFrame, Document, EventFrame, JoinedFrame, Limits, Metadata,
    ServerFrame, SessionId, WelcomeFrame, PROTOCOL_VERSION,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Frames queued per connection before the floor drops them (and counts the drop).
const QUEUE: usize = 4096;

type Members = Vec<(SessionId, mpsc::Sender<Bytes>)>;

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, (Members, u64)>>,
    dropped: AtomicU64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on ws://{}/ws", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(tcp, Arc::clone(&rooms)));
    }
}

async fn serve(tcp: TcpStream, rooms: Arc<Rooms>) {
    // A small read buffer: tungstenite zeroes all of it before every read.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let id = SessionId::new_random();
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
            // Write whatever else is already queued before flushing.
            while let Ok(frame) = rx.try_recv() {
                if sink.feed(Message::Binary(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let welcome = ServerFrame::Welcome(WelcomeFrame {
        session: id,
        protocol: PROTOCOL_VERSION,
        heartbeat_ms: 0,
        timeout_ms: 0,
        limits: Limits {
            max_frame_bytes: 65536,
            max_rooms_per_session: 16,
            max_members_per_room: 1000,
            max_room_name_bytes: 128,
            max_event_name_bytes: 64,
            max_depth: 32,
            outbound_budget_bytes: 0,
            max_state_bytes: 0,
            max_state_values: 0,
            max_metadata_bytes: 0,
            frames_per_second: 0,
            bytes_per_second: 0,
        },
        resume_token: String::new(),
        reconnect_grace_ms: 0,
        user: None,
    });
    let _ = tx.send(encode_server(&welcome)).await;
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(message)) = stream.next().await {
        let Message::Binary(bytes) = message else {
            continue;
        };
        let Ok(frame) = decode_client(&bytes, 32) else {
            continue;
        };
        match frame {
            ClientFrame::Join {
                reference, room, ..
            } => {
                let members: Vec<SessionId> = {
                    let mut map = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
                    let (members, _) = map.entry(room.clone()).or_default();
                    members.push((id, tx.clone()));
                    members.iter().map(|(m, _)| *m).collect()
                };
                joined.push(room.clone());
                let _ = tx
                    .send(encode_server(&ServerFrame::Joined(JoinedFrame {
                        reference,
                        room,
                        owner: members.first().copied(),
                        members,
                        max_members: u32::MAX,
                        locked: false,
                        locked_by_owner: false,
                        private: false,
                        metadata: Metadata::new(),
                        state: Document::new(),
                        version: 0,
                        epoch: String::new(),
                        offset: 0,
                        users: Default::default(),
                        away: Vec::new(),
                        room_type: None,
                    })))
                    .await;
                if let Some(reference) = reference {
                    let _ = tx
                        .send(encode_server(&ServerFrame::Ok {
                            reference,
                            data: None,
                        }))
                        .await;
                }
            }
            ClientFrame::Emit {
                room,
                event,
                data,
                echo,
                ..
            } => {
                let mut map = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
                let Some((members, next_offset)) = map.get_mut(&room) else {
                    continue;
                };
                let offset = *next_offset;
                *next_offset += 1;
                let frame = encode_server(&ServerFrame::Event(EventFrame {
                    room,
                    from: id,
                    event,
                    data,
                    offset,
                }));
                for (member, member_tx) in members.iter() {
                    if (echo || *member != id) && member_tx.try_send(frame.clone()).is_err() {
                        rooms.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // The floor only does what the benchmark measures: join and emit.
            _ => {}
        }
    }
    {
        let mut map = rooms.rooms.lock().unwrap_or_else(|e| e.into_inner());
        for room in joined {
            if let Some((members, _)) = map.get_mut(&room) {
                members.retain(|(m, _)| *m != id);
                if members.is_empty() {
                    map.remove(&room);
                }
            }
        }
    }
    let dropped = rooms.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        eprintln!("raw floor: {dropped} frames dropped so far (queues full)");
    }
    writer.abort();
}
