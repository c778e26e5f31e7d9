//! The browser lobby's twin in a terminal: a live room list, create / join / quick play, and a
//! room with players, chat and the same shared 12×12 paint grid (so a terminal and a browser
//! can paint together).
//!
//!     cargo run --example lobby -- [--url ws://127.0.0.1:8080/ws] [--name NAME]
//!
//! Type `/help` for the commands; any other line is said in the current room.

use std::collections::BTreeMap;

use clap::Parser;
use parlor_client::protocol::{
    ClientFrame, Metadata, PresenceStatus, RoomFilter, RoomInfo, RoomOptions, ServerFrame,
    SessionId, StateOp, Value,
};
use parlor_client::{Client, StateMirror};
use tokio::io::{AsyncBufReadExt, BufReader};

const GRID: usize = 12;

const HELP: &str = "\
commands:
  /rooms                         list the public rooms (kept live by the lobby)
  /create [NAME] [--max N] [--mode M] [--private] [--password P]
  /join ROOM [PASSWORD]          join by name or id
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
}

/// The room this terminal is in.
struct Current {
    name: String,
    members: Vec<SessionId>,
    owner: Option<SessionId>,
    locked: bool,
    mirror: StateMirror,
}

struct Lobby {
    me: SessionId,
    name: String,
    rooms: BTreeMap<String, RoomInfo>,
    current: Option<Current>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut client = Client::connect(&args.url).await?;
    let me = client.session_id();
    let rooms = client.subscribe_lobby(RoomFilter::default()).await?;
    let mut lobby = Lobby {
        me,
        name: args.name.unwrap_or_else(|| format!("term-{}", short(me))),
        rooms: rooms.into_iter().map(|r| (r.room.clone(), r)).collect(),
        current: None,
    };
    println!("connected as {} ({me}); /help for commands", lobby.name);
    lobby.print_rooms();

    let (mut tx, mut rx) = client.split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                match lobby.command(line.trim()) {
                    Action::Send(frames) => {
                        for frame in frames {
                            tx.send(frame).await?;
                        }
                    }
                    Action::Nothing => {}
                    Action::Quit => break,
                }
            }
            frame = rx.next_frame() => {
                let frame = frame?;
                if let Some(reply) = lobby.receive(frame) {
                    tx.send(reply).await?;
                }
            }
        }
    }
    let _ = tx.close().await;
    Ok(())
}

enum Action {
    Send(Vec<ClientFrame>),
    Nothing,
    Quit,
}

impl Lobby {
    fn command(&mut self, line: &str) -> Action {
        let words: Vec<&str> = line.split_whitespace().collect();
        let room = self.current.as_ref().map(|c| c.name.clone());
        let send = |frame| Action::Send(vec![frame]);
        match words.as_slice() {
            [] => Action::Nothing,
            ["/quit"] => Action::Quit,
            ["/help"] => {
                println!("{HELP}");
                Action::Nothing
            }
            ["/rooms"] => {
                self.print_rooms();
                Action::Nothing
            }
            ["/create", rest @ ..] => match parse_create(rest) {
                Ok((room, options)) => self.switch(ClientFrame::Create {
                    reference: None,
                    room,
                    options,
                }),
                Err(why) => {
                    println!("{why}");
                    Action::Nothing
                }
            },
            ["/join", name, password @ ..] => self.switch(ClientFrame::Join {
                reference: None,
                room: name.to_string(),
                password: password.first().map(|p| p.to_string()),
                create: true,
            }),
            ["/quick", mode, seats @ ..] => self.switch(ClientFrame::JoinOrCreate {
                reference: None,
                filter: RoomFilter {
                    mode: Some(mode.to_string()),
                    free_seats: true,
                    ..RoomFilter::default()
                },
                options: RoomOptions {
                    max_members: seats.first().and_then(|s| s.parse().ok()).or(Some(4)),
                    ..RoomOptions::default()
                },
            }),
            ["/name", name] => {
                self.name = name.to_string();
                match room {
                    Some(room) => send(self.name_frame(&room)),
                    None => Action::Nothing,
                }
            }
            _ if room.is_none() => {
                println!("you are in no room: /rooms, /join, /quick or /create first");
                Action::Nothing
            }
            ["/leave"] => self.switch_out(),
            ["/who"] => {
                self.print_members();
                Action::Nothing
            }
            ["/grid"] => {
                self.print_grid();
                Action::Nothing
            }
            ["/paint", x, y, colour @ ..] => match (x.parse::<usize>(), y.parse::<usize>()) {
                (Ok(x), Ok(y)) if x < GRID && y < GRID => send(ClientFrame::UpdateState {
                    reference: None,
                    room: room.unwrap_or_default(),
                    ops: vec![StateOp::Set {
                        path: vec!["grid".into(), format!("{x},{y}")],
                        value: Value::from(colour.first().copied().unwrap_or("#e4572e")),
                    }],
                    if_version: None,
                }),
                _ => {
                    println!("cells are 0 to {} across and down", GRID - 1);
                    Action::Nothing
                }
            },
            ["/lock"] | ["/unlock"] => send(ClientFrame::set_lock(
                room.unwrap_or_default(),
                words[0] == "/lock",
            )),
            ["/kick", prefix] => {
                let target = self.current.as_ref().and_then(|c| {
                    c.members
                        .iter()
                        .find(|m| m.to_string().starts_with(prefix))
                        .copied()
                });
                match target {
                    Some(session) => send(ClientFrame::Kick {
                        reference: None,
                        room: room.unwrap_or_default(),
                        session,
                    }),
                    None => {
                        println!("no player's id starts with {prefix}");
                        Action::Nothing
                    }
                }
            }
            _ if line.starts_with('/') => {
                println!("unknown command; /help lists them");
                Action::Nothing
            }
            _ => send(ClientFrame::Emit {
                reference: None,
                room: room.unwrap_or_default(),
                event: "chat".into(),
                data: Value::Map(vec![
                    ("name".into(), Value::from(self.name.as_str())),
                    ("text".into(), Value::from(line)),
                ]),
                echo: true,
            }),
        }
    }

    /// Leaves the current room (if any) and sends `joining`.
    fn switch(&mut self, joining: ClientFrame) -> Action {
        let mut frames = match self.switch_out() {
            Action::Send(frames) => frames,
            _ => Vec::new(),
        };
        frames.push(joining);
        Action::Send(frames)
    }

    fn switch_out(&mut self) -> Action {
        match self.current.take() {
            Some(current) => Action::Send(vec![
                ClientFrame::UpdateState {
                    reference: None,
                    room: current.name.clone(),
                    ops: vec![StateOp::Delete {
                        path: vec!["names".into(), self.me.to_string()],
                    }],
                    if_version: None,
                },
                ClientFrame::Leave {
                    reference: None,
                    room: current.name,
                },
            ]),
            None => Action::Nothing,
        }
    }

    fn name_frame(&self, room: &str) -> ClientFrame {
        ClientFrame::UpdateState {
            reference: None,
            room: room.into(),
            ops: vec![StateOp::Set {
                path: vec!["names".into(), self.me.to_string()],
                value: Value::from(self.name.as_str()),
            }],
            if_version: None,
        }
    }

    /// Handles a frame from the server; may answer with one frame.
    fn receive(&mut self, frame: ServerFrame) -> Option<ClientFrame> {
        match frame {
            ServerFrame::Joined(j) => {
                println!(
                    "joined {} ({} of {} seats{}); /help for commands",
                    j.room,
                    j.members.len(),
                    j.max_members,
                    if j.private { ", private" } else { "" }
                );
                let reply = self.name_frame(&j.room);
                self.current = Some(Current {
                    mirror: StateMirror::from_joined(&j),
                    name: j.room,
                    members: j.members,
                    owner: j.owner,
                    locked: j.locked,
                });
                self.print_members();
                return Some(reply);
            }
            ServerFrame::Left { room, reason } => {
                println!("you left {room} ({})", format!("{reason:?}").to_lowercase());
                if self.current.as_ref().is_some_and(|c| c.name == room) {
                    self.current = None;
                }
            }
            ServerFrame::Presence(p) => {
                let who = self.display(p.session);
                if let Some(current) = self.current.as_mut().filter(|c| c.name == p.room) {
                    match p.status {
                        PresenceStatus::Joined => {
                            current.members.push(p.session);
                            println!("* {who} joined");
                        }
                        PresenceStatus::Left => {
                            current.members.retain(|m| *m != p.session);
                            let reason = p.reason.map(|r| format!("{r:?}")).unwrap_or_default();
                            println!("* {who} left ({})", reason.to_lowercase());
                        }
                        PresenceStatus::Away => println!("* {who} is away"),
                        PresenceStatus::Back => println!("* {who} is back"),
                    }
                }
            }
            ServerFrame::RoomUpdate(u) => {
                if let Some(current) = self.current.as_mut().filter(|c| c.name == u.room) {
                    if current.owner != u.owner {
                        current.owner = u.owner;
                        let owner = u.owner.map(|o| self.display(o)).unwrap_or_default();
                        println!("* {owner} owns the room now");
                    } else if current.locked != u.locked {
                        current.locked = u.locked;
                        println!("* the room is {}", if u.locked { "locked" } else { "open" });
                    }
                }
            }
            ServerFrame::StatePatch(patch) => {
                if let Some(current) = self.current.as_mut().filter(|c| c.name == patch.room) {
                    if let Err(err) = current.mirror.apply(&patch) {
                        println!("state out of step ({err}); rejoin the room");
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
            ServerFrame::Event(e) if e.event == "chat" => {
                let field = |key: &str| match &e.data {
                    Value::Map(entries) => entries
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(key))
                        .and_then(|(_, v)| v.as_str().map(String::from)),
                    _ => None,
                };
                let who = field("name").unwrap_or_else(|| short(e.from));
                println!("<{who}> {}", field("text").unwrap_or_default());
            }
            ServerFrame::Lobby(update) => {
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
            ServerFrame::Error(e) => println!("! {}: {}", e.code.as_str(), e.message),
            _ => {}
        }
        None
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
            println!("no public rooms; /create or /quick MODE makes one");
        }
        for info in self.rooms.values() {
            println!("  {}", describe(info));
        }
    }

    fn print_members(&self) {
        let Some(current) = &self.current else { return };
        for member in &current.members {
            let mut tags = Vec::new();
            if Some(*member) == current.owner {
                tags.push("owner");
            }
            if *member == self.me {
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

fn describe(info: &RoomInfo) -> String {
    let mode = info
        .metadata
        .get("mode")
        .and_then(|m| m.as_str())
        .unwrap_or("-");
    format!(
        "{:<34} {:<10} {}/{}{}{}",
        info.room,
        mode,
        info.members,
        info.max_members,
        if info.locked { " locked" } else { "" },
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
