//! A terminal chat on Parlor: connects, joins a room, sends each line you type as a `chat`
//! event, and prints what arrives (messages, who comes and goes, direct messages).
//!
//!     cargo run --example chat -- [--url ws://127.0.0.1:8080/ws] [--room lobby] [--name NAME] [--token JWT]
//!
//! Lines starting with `/` are commands: `/join ROOM`, `/leave ROOM`, `/to ROOM` (where plain
//! lines go), `/quit`. When the connection drops it says so at once and reconnects by itself,
//! catching up on what was said meanwhile; if the server let the session go, it joins your
//! rooms again. A close that means "stay away" (kicked, replaced) ends it, saying why.

#[path = "common/words.rs"]
mod words;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use clap::Parser;
use parlor_client::protocol::{PresenceStatus, SessionId};
use parlor_client::{Event, Parlor, TypedData};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value = "lobby")]
    room: String,
    /// Shown to others next to your lines (your session id is shown anyway).
    #[arg(long)]
    name: Option<String>,
    /// A JWT, for a server with `[auth]`.
    #[arg(long, env = "PARLOR_TOKEN")]
    token: Option<String>,
}

/// What a `chat` event carries (the browser lobby sends the same).
#[derive(Serialize, Deserialize)]
struct Chat {
    name: String,
    text: String,
}

struct Chatter {
    parlor: Parlor,
    name: String,
    /// Where plain lines go.
    current: String,
    /// The rooms this session is in, to join again if the server lets the session go.
    rooms: BTreeSet<String>,
    /// Names others gave in their lines, by session.
    names: HashMap<SessionId, String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut builder = Parlor::builder(&args.url).request_timeout(Duration::from_secs(10));
    if let Some(token) = &args.token {
        builder = builder.token(token);
    }
    let (parlor, mut events) = match builder.connect().await {
        Ok(connected) => connected,
        Err(err) => {
            eprintln!("{}", words::connect_failed(&args.url, &err));
            std::process::exit(1);
        }
    };
    let me = parlor.session_id();
    let mut chat = Chatter {
        name: args.name.unwrap_or_else(|| short(me)),
        parlor,
        current: args.room.clone(),
        rooms: BTreeSet::new(),
        names: HashMap::new(),
    };
    println!("connected as {} ({me})", chat.name);
    chat.join(&args.room, true).await;
    println!("type a line to send it; /join ROOM, /leave ROOM, /to ROOM, /quit");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if !chat.command(line.trim()).await {
                        break;
                    }
                }
                // The end of input (or a terminal that went away) ends the chat.
                Ok(None) | Err(_) => break,
            },
            // Events come as they happen, so a lost connection shows at once, not on Enter.
            event = events.recv() => match event {
                Some(event) => {
                    if !chat.show(event).await {
                        std::process::exit(1);
                    }
                }
                None => std::process::exit(1),
            },
        }
    }
    chat.parlor.close().await;
}

impl Chatter {
    /// Runs a typed line; false to quit.
    async fn command(&mut self, line: &str) -> bool {
        match line.split_once(' ').unwrap_or((line, "")) {
            ("", _) => {}
            ("/quit", _) => return false,
            ("/join", room) => self.join(room.trim(), true).await,
            ("/leave", room) => {
                let room = room.trim();
                match self.parlor.leave(room).await {
                    Ok(()) => {
                        self.rooms.remove(room);
                    }
                    Err(err) => println!("! {}", words::request_failed(&err)),
                }
            }
            ("/to", room) => {
                self.current = room.trim().into();
                println!("now sending to #{}", self.current);
            }
            (command, _) if command.starts_with('/') => {
                println!("unknown command; /join ROOM, /leave ROOM, /to ROOM, /quit")
            }
            _ => {
                let said = Chat {
                    name: self.name.clone(),
                    text: line.into(),
                };
                if let Err(err) = self.parlor.emit(&self.current, "chat", &said).await {
                    println!("! {}", words::request_failed(&err));
                }
            }
        }
        true
    }

    /// Joins `room`, and sends plain lines there from now on if `switch`.
    async fn join(&mut self, room: &str, switch: bool) {
        match self.parlor.join(room).await {
            Ok(joined) => {
                println!("#{room}: joined, {} member(s)", joined.members.len());
                self.rooms.insert(room.into());
                if switch {
                    self.current = room.into();
                }
            }
            Err(err) => println!("! #{room}: {}", words::request_failed(&err)),
        }
    }

    /// Prints an event; false once the client is closed for good.
    async fn show(&mut self, event: Event) -> bool {
        if let Some(line) = words::connection_line(&event) {
            println!("-- {line}");
        }
        match event {
            Event::RoomEvent(e) => match (e.event.as_str(), e.data_as::<Chat>()) {
                ("chat", Ok(said)) => {
                    println!("#{} <{}> {}", e.room, said.name, said.text);
                    self.names.insert(e.from, said.name);
                }
                _ => println!("#{} <{}> {}: {}", e.room, self.who(e.from), e.event, e.data),
            },
            Event::Presence(p) => {
                let who = self.who(p.session);
                let what = match p.status {
                    PresenceStatus::Joined => "joined",
                    PresenceStatus::Left => words::left_because(p.reason),
                    PresenceStatus::Away => "lost the connection (their seat is kept)",
                    PresenceStatus::Back => "is back",
                };
                println!("#{} * {who} {what}", p.room);
            }
            Event::Direct(d) => println!("(direct) <{}> {}: {}", self.who(d.from), d.event, d.data),
            Event::Left { room, reason } => {
                self.rooms.remove(&room);
                println!("#{room}: you {}", words::left_because(Some(reason)));
            }
            Event::Joined(j) => println!(
                "#{}: back in the room, {} member(s)",
                j.room,
                j.members.len()
            ),
            Event::Error(e) => println!("! The server said: {}", e.message),
            Event::Resumed(r) => {
                for room in &r.lost {
                    self.rooms.remove(room);
                }
            }
            Event::Reset(r) => {
                // A new session, in no room: join the old session's rooms again.
                self.rooms.clear();
                for room in r.lost {
                    self.join(&room, false).await;
                }
            }
            Event::Closed(_) => return false,
            _ => {}
        }
        true
    }

    fn who(&self, session: SessionId) -> String {
        self.names
            .get(&session)
            .cloned()
            .unwrap_or_else(|| short(session))
    }
}

fn short(id: SessionId) -> String {
    id.to_string().chars().take(8).collect()
}
