//! The browser lobby's twin in a terminal: a live room list, create / join / quick play, and a
//! room with players, chat and the same shared 12×12 paint grid (so a terminal and a browser
//! can paint together).
//!
//!     cargo run --example lobby -- [--url ws://127.0.0.1:8080/ws] [--name NAME] [--token JWT]
//!
//! Type `/help` for the commands; any other line is said in the current room. It reconnects by
//! itself (the room list and the room catch up), and says what the connection is doing.

#[path = "common/words.rs"]
mod words;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use parlor_client::protocol::{
    ErrorCode, JoinedFrame, Metadata, PresenceStatus, RoomFilter, RoomInfo, RoomOptions, SessionId,
    StateOp, Value,
};
use parlor_client::{ClientError, Event, JoinOptions, Parlor, StateMirror, TypedData};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

const GRID: usize = 12;

const HELP: &str = "\
commands:
  /rooms                         list the public rooms (kept live by the lobby)
  /create [NAME] [--max N] [--mode M] [--private] [--password P]
  /join ROOM [PASSWORD]          join a room that exists, by name or id
  /quick MODE [SEATS]            join the fullest open MODE room, or create one
  /leave                         leave the current room
  /who                           players in the current room
  /paint X Y [#rrggbb]           paint a cell of the shared grid (0-based)
  /grid                          print the shared grid
  /lock, /unlock, /kick ID       owner only (ID: the first characters of a session id)
  /name NAME                     change your name
  /quit
anything else is said in the current room";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
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

/// The room this terminal is in.
struct Current {
    name: String,
    /// The password it was entered with, to enter it again after a reset.
    password: Option<String>,
    members: Vec<SessionId>,
    owner: Option<SessionId>,
    locked: bool,
    locked_by_owner: bool,
    mirror: StateMirror,
}

struct Lobby {
    parlor: Parlor,
    name: String,
    rooms: BTreeMap<String, RoomInfo>,
    current: Option<Current>,
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
    let rooms = match parlor.subscribe_lobby(RoomFilter::default()).await {
        Ok(rooms) => rooms,
        Err(err) => {
            println!(
                "! The room list is not available: {}",
                words::request_failed(&err)
            );
            Vec::new()
        }
    };
    let mut lobby = Lobby {
        name: args.name.unwrap_or_else(|| format!("term-{}", short(me))),
        parlor,
        rooms: rooms.into_iter().map(|r| (r.room.clone(), r)).collect(),
        current: None,
    };
    println!("connected as {} ({me}); /help for commands", lobby.name);
    lobby.print_rooms();

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if !lobby.command(line.trim()).await {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            },
            event = events.recv() => match event {
                Some(event) => {
                    if !lobby.receive(event).await {
                        std::process::exit(1);
                    }
                }
                None => std::process::exit(1),
            },
        }
    }
    lobby.parlor.close().await;
}

impl Lobby {
    fn me(&self) -> SessionId {
        self.parlor.session_id()
    }

    /// Runs a typed line; false to quit.
    async fn command(&mut self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let room = self.current.as_ref().map(|c| c.name.clone());
        match words.as_slice() {
            [] => {}
            ["/quit"] => return false,
            ["/help"] => println!("{HELP}"),
            ["/rooms"] => self.print_rooms(),
            ["/create", rest @ ..] => match parse_create(rest) {
                Ok((room, options)) => {
                    let password = options.password.clone();
                    let created = self.parlor.create(room.as_deref(), options).await;
                    self.enter(created, password).await;
                }
                Err(why) => println!("{why}"),
            },
            ["/join", name, password @ ..] => {
                let password = password.first().map(|p| p.to_string());
                let options = JoinOptions {
                    password: password.clone(),
                    ..JoinOptions::existing()
                };
                match self.parlor.join_with(name, options).await {
                    Err(err) if err.code() == Some(ErrorCode::RoomNotFound) => {
                        println!("No room called {name}; /create {name} makes one.")
                    }
                    joined => self.enter(joined, password).await,
                }
            }
            ["/quick", mode, seats @ ..] => {
                let filter = RoomFilter {
                    mode: Some(mode.to_string()),
                    free_seats: true,
                    ..RoomFilter::default()
                };
                let mut metadata = Metadata::new();
                metadata.insert("mode".into(), Value::from(*mode));
                let options = RoomOptions {
                    max_members: seats.first().and_then(|s| s.parse().ok()).or(Some(4)),
                    metadata,
                    ..RoomOptions::default()
                };
                let joined = self.parlor.join_or_create(filter, options).await;
                self.enter(joined, None).await;
            }
            ["/name", name] => {
                self.name = name.to_string();
                if let Some(room) = room {
                    self.say_name(&room).await;
                }
            }
            _ if line.starts_with('/') && room.is_none() && is_room_command(words[0]) => {
                println!("You are in no room: /rooms, /join, /quick or /create first.")
            }
            ["/leave"] => {
                if let Some(current) = self.current.take() {
                    self.leave(&current.name).await;
                }
            }
            ["/who"] => self.print_members(),
            ["/grid"] => self.print_grid(),
            ["/paint", x, y, colour @ ..] => match (x.parse::<usize>(), y.parse::<usize>()) {
                (Ok(x), Ok(y)) if x < GRID && y < GRID => {
                    let colour = colour.first().copied().unwrap_or("#e4572e");
                    let cell = format!("{x},{y}");
                    let room = room.unwrap_or_default();
                    let painted = self.parlor.set_state(&room, &["grid", &cell], colour).await;
                    self.report(painted);
                }
                _ => println!("Cells are 0 to {} across and down.", GRID - 1),
            },
            ["/lock"] => {
                let locked = self
                    .parlor
                    .set_locked(&room.unwrap_or_default(), true)
                    .await;
                self.report(locked);
            }
            ["/unlock"] => match &self.current {
                Some(current) if !current.locked_by_owner && current.locked => {
                    println!("The room is full, not locked: it opens when a seat frees.")
                }
                Some(current) if !current.locked_by_owner => println!("The room is not locked."),
                _ => {
                    let unlocked = self
                        .parlor
                        .set_locked(&room.unwrap_or_default(), false)
                        .await;
                    self.report(unlocked);
                }
            },
            ["/kick", prefix] => {
                let target = self.current.as_ref().and_then(|c| {
                    c.members
                        .iter()
                        .find(|m| m.to_string().starts_with(prefix))
                        .copied()
                });
                match target {
                    Some(session) => {
                        let kicked = self.parlor.kick(&room.unwrap_or_default(), session).await;
                        self.report(kicked);
                    }
                    None => println!("No player's id starts with {prefix}."),
                }
            }
            _ if line.starts_with('/') => println!("Unknown command; /help lists them."),
            _ => match room {
                Some(room) => {
                    let said = Chat {
                        name: self.name.clone(),
                        text: line.into(),
                    };
                    let sent = self.parlor.emit_echo(&room, "chat", &said).await;
                    self.report(sent);
                }
                None => println!("You are in no room: /rooms, /join, /quick or /create first."),
            },
        }
        true
    }

    /// Shows a failed request in words.
    fn report(&self, result: Result<(), ClientError>) {
        if let Err(err) = result {
            println!("! {}", words::request_failed(&err));
        }
    }

    /// Takes the room a join answered with; the room before it is left only then, so a
    /// refused join keeps you where you were.
    async fn enter(&mut self, joined: Result<JoinedFrame, ClientError>, password: Option<String>) {
        let joined = match joined {
            Ok(joined) => joined,
            Err(err) => return println!("! {}", words::request_failed(&err)),
        };
        if let Some(previous) = self.current.take() {
            if previous.name != joined.room {
                self.leave(&previous.name).await;
            }
        }
        let room = joined.room.clone();
        self.show_joined(joined, password);
        self.say_name(&room).await;
    }

    fn show_joined(&mut self, joined: JoinedFrame, password: Option<String>) {
        println!(
            "joined {} ({} of {} seats{}); /help for commands",
            joined.room,
            joined.members.len(),
            joined.max_members,
            if joined.private { ", private" } else { "" }
        );
        self.current = Some(Current {
            mirror: StateMirror::from_joined(&joined),
            name: joined.room,
            password,
            members: joined.members,
            owner: joined.owner,
            locked: joined.locked,
            locked_by_owner: joined.locked_by_owner,
        });
        self.print_members();
    }

    /// Leaves `room`, taking this player's name out of its state first.
    async fn leave(&mut self, room: &str) {
        let forget = StateOp::Delete {
            path: vec!["names".into(), self.me().to_string()],
        };
        // The name goes with the player; if it cannot, leaving matters more.
        let _ = self.parlor.update_state(room, vec![forget], None).await;
        let left = self.parlor.leave(room).await;
        self.report(left);
    }

    /// Puts this player's name in the room's state, where the browser lobby reads it too.
    async fn say_name(&self, room: &str) {
        let me = self.me().to_string();
        let named = self
            .parlor
            .set_state(room, &["names", &me], &self.name)
            .await;
        self.report(named);
    }

    /// Handles an event; false once the client is closed for good.
    async fn receive(&mut self, event: Event) -> bool {
        if let Some(line) = words::connection_line(&event) {
            println!("-- {line}");
        }
        match event {
            Event::Joined(joined) => {
                // A snapshot after a resume replaces what this terminal had of its room.
                let password = self.current.take().and_then(|c| c.password);
                self.show_joined(joined, password);
                self.print_grid();
            }
            Event::Left { room, reason } => {
                if self.current.as_ref().is_some_and(|c| c.name == room) {
                    self.current = None;
                }
                println!("You {} {room}.", words::left_because(Some(reason)));
            }
            Event::Presence(p) => {
                let who = self.display(p.session);
                if let Some(current) = self.current.as_mut().filter(|c| c.name == p.room) {
                    match p.status {
                        PresenceStatus::Joined => {
                            current.members.push(p.session);
                            println!("* {who} joined");
                        }
                        PresenceStatus::Left => {
                            current.members.retain(|m| *m != p.session);
                            println!("* {who} {}", words::left_because(p.reason));
                        }
                        PresenceStatus::Away => {
                            println!("* {who} lost the connection (their seat is kept)")
                        }
                        PresenceStatus::Back => println!("* {who} is back"),
                    }
                }
            }
            Event::RoomUpdate(u) => {
                if let Some(current) = self.current.as_mut().filter(|c| c.name == u.room) {
                    let owner_changed = current.owner != u.owner;
                    let lock_changed =
                        (current.locked, current.locked_by_owner) != (u.locked, u.locked_by_owner);
                    current.owner = u.owner;
                    current.locked = u.locked;
                    current.locked_by_owner = u.locked_by_owner;
                    if owner_changed {
                        let owner = u.owner.map(|o| self.display(o)).unwrap_or_default();
                        println!("* {owner} owns the room now");
                    }
                    if lock_changed {
                        let how = match (u.locked_by_owner, u.locked) {
                            (true, _) => "locked by its owner",
                            (false, true) => "full",
                            (false, false) => "open",
                        };
                        println!("* the room is {how}");
                    }
                }
            }
            Event::StatePatch(patch) => {
                if let Some(current) = self.current.as_mut().filter(|c| c.name == patch.room) {
                    if current.mirror.apply(&patch).is_err() {
                        println!("The room's shared state is out of step; /join it again.");
                    }
                    let painted = patch
                        .patches
                        .iter()
                        .flat_map(|p| &p.ops)
                        .any(|op| op.path().first().is_some_and(|k| k == "grid"));
                    if painted {
                        self.print_grid();
                    }
                }
            }
            Event::RoomEvent(e) if e.event == "chat" => {
                let (who, text) = match e.data_as::<Chat>() {
                    Ok(said) => (said.name, said.text),
                    Err(_) => (short(e.from), e.data.to_string()),
                };
                println!("<{who}> {text}");
            }
            Event::Lobby(update) => {
                for info in update.added {
                    println!("[lobby] + {}", describe(&info));
                    self.rooms.insert(info.room.clone(), info);
                }
                for info in update.changed {
                    self.rooms.insert(info.room.clone(), info);
                }
                for gone in update.removed {
                    if self.rooms.remove(&gone).is_some() {
                        println!("[lobby] - {gone}");
                    }
                }
            }
            Event::LobbyRooms(rooms) => {
                self.rooms = rooms.into_iter().map(|r| (r.room.clone(), r)).collect();
                println!(
                    "[lobby] {} public room(s); /rooms lists them",
                    self.rooms.len()
                );
            }
            Event::Error(e) => println!("! The server said: {}", e.message),
            Event::Resumed(resumed)
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| resumed.lost.contains(&c.name)) =>
            {
                self.current = None;
            }
            Event::Reset(_) => {
                // A new session, in no room: go back into the room if it is still there.
                if let Some(previous) = self.current.take() {
                    let options = JoinOptions {
                        password: previous.password.clone(),
                        ..JoinOptions::existing()
                    };
                    match self.parlor.join_with(&previous.name, options).await {
                        Err(err) if err.code() == Some(ErrorCode::RoomNotFound) => {
                            println!("{} is gone: the server no longer has it.", previous.name)
                        }
                        joined => self.enter(joined, previous.password).await,
                    }
                }
            }
            Event::Closed(_) => return false,
            _ => {}
        }
        true
    }

    fn display(&self, id: SessionId) -> String {
        let name = self.current.as_ref().and_then(|c| {
            c.mirror
                .state
                .get(&["names".into(), id.to_string()])
                .and_then(|v| v.as_str().map(String::from))
        });
        match name {
            Some(name) => format!("{name} [{}]", short(id)),
            None => short(id),
        }
    }

    fn print_rooms(&self) {
        if self.rooms.is_empty() {
            println!("No public rooms; /create or /quick MODE makes one.");
        }
        for info in self.rooms.values() {
            println!("  {}", describe(info));
        }
    }

    fn print_members(&self) {
        let Some(current) = &self.current else { return };
        let me = self.me();
        for member in &current.members {
            let mut tags = Vec::new();
            if Some(*member) == current.owner {
                tags.push("owner");
            }
            if *member == me {
                tags.push("you");
            }
            println!("  {} {}", self.display(*member), tags.join(" "));
        }
    }

    fn print_grid(&self) {
        let Some(current) = &self.current else { return };
        let grid = current.mirror.state.get(&["grid".into()]);
        let painted = |x: usize, y: usize| -> bool {
            matches!(&grid, Some(Value::Map(cells))
                if cells.iter().any(|(k, _)| k.as_str() == Some(&format!("{x},{y}"))))
        };
        for y in 0..GRID {
            let row: String = (0..GRID)
                .map(|x| if painted(x, y) { "██" } else { "··" })
                .collect();
            println!("  {row}");
        }
    }
}

/// Commands that need a current room.
fn is_room_command(command: &str) -> bool {
    matches!(
        command,
        "/leave" | "/who" | "/grid" | "/paint" | "/lock" | "/unlock" | "/kick"
    )
}

fn describe(info: &RoomInfo) -> String {
    let mode = info
        .metadata
        .get("mode")
        .and_then(|m| m.as_str())
        .unwrap_or("-");
    let closed = match (info.locked_by_owner, info.locked) {
        (true, _) => " locked",
        (false, true) => " full",
        (false, false) => "",
    };
    format!(
        "{:<34} {:<10} {}/{}{closed}{}",
        info.room,
        mode,
        info.members,
        info.max_members,
        if info.password { " password" } else { "" }
    )
}

fn parse_create(words: &[&str]) -> Result<(Option<String>, RoomOptions), String> {
    let mut options = RoomOptions::default();
    let mut room = None;
    let mut metadata = Metadata::new();
    let mut it = words.iter();
    while let Some(word) = it.next() {
        match *word {
            "--private" => options.private = true,
            "--max" => {
                options.max_members = Some(
                    it.next()
                        .and_then(|n| n.parse().ok())
                        .ok_or("--max takes a number")?,
                )
            }
            "--mode" => {
                let mode = it.next().ok_or("--mode takes a name")?;
                metadata.insert("mode".into(), Value::from(*mode));
            }
            "--password" => {
                options.password = Some(it.next().ok_or("--password takes a word")?.to_string())
            }
            name if room.is_none() && !name.starts_with("--") => room = Some(name.to_string()),
            other => return Err(format!("unexpected {other:?}; /help shows the syntax")),
        }
    }
    options.metadata = metadata;
    Ok((room, options))
}

fn short(id: SessionId) -> String {
    id.to_string().chars().take(8).collect()
}
