//! A terminal chat on Parlor: connects, joins a room, sends each line you type as a `chat`
//! event, and prints what arrives (events, presence, errors).
//!
//!     cargo run --example chat -- [--url ws://127.0.0.1:8080/ws] [--room lobby] [--name NAME]
//!
//! Lines starting with `/` are commands: `/join ROOM`, `/leave ROOM`, `/to ROOM` (where plain
//! lines go), `/quit`.

use clap::Parser;
use parlor_client::protocol::{ClientFrame, PresenceStatus, ServerFrame, Value};
use parlor_client::Client;
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
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut client = Client::connect(&args.url).await?;
    let me = client.session_id();
    let name = args.name.unwrap_or_else(|| short(&me.to_string()));
    let members = client.join(&args.room).await?;
    println!(
        "connected as {name} ({me}); in #{} with {} member(s)",
        args.room,
        members.len()
    );
    println!("type a line to send it; /join ROOM, /leave ROOM, /to ROOM, /quit");

    let (mut tx, mut rx) = client.split();
    let mut current = args.room;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim();
                let frame = match line.split_once(' ').unwrap_or((line, "")) {
                    ("", _) => continue,
                    ("/quit", _) => break,
                    ("/join", room) => ClientFrame::Join {
                        reference: None,
                        room: room.into(),
                        password: None,
                        create: true,
                    },
                    ("/leave", room) => ClientFrame::Leave { reference: None, room: room.into() },
                    ("/to", room) => {
                        current = room.into();
                        println!("now sending to #{current}");
                        continue;
                    }
                    _ => {
                        let data = Value::Map(vec![
                            (Value::from("name"), Value::from(name.as_str())),
                            (Value::from("text"), Value::from(line)),
                        ]);
                        ClientFrame::Emit { reference: None, room: current.clone(), event: "chat".into(), data, echo: false }
                    }
                };
                tx.send(frame).await?;
            }
            frame = rx.next_frame() => print_frame(&frame?),
        }
    }
    tx.close().await?;
    Ok(())
}

fn print_frame(frame: &ServerFrame) {
    match frame {
        ServerFrame::Event(e) => {
            let field = |key: &str| match &e.data {
                Value::Map(m) => m
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(key))
                    .map(|(_, v)| v.clone()),
                _ => None,
            };
            let who = field("name")
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_else(|| short(&e.from.to_string()));
            match (e.event.as_str(), field("text")) {
                ("chat", Some(Value::String(text))) => {
                    println!("#{} <{who}> {}", e.room, text.as_str().unwrap_or(""))
                }
                _ => println!("#{} <{who}> {}: {}", e.room, e.event, e.data),
            }
        }
        ServerFrame::Presence(p) => match p.status {
            PresenceStatus::Joined => {
                println!("#{} * {} joined", p.room, short(&p.session.to_string()))
            }
            PresenceStatus::Left => {
                let reason = p.reason.map(|r| format!("{r:?}")).unwrap_or_default();
                println!(
                    "#{} * {} left ({reason})",
                    p.room,
                    short(&p.session.to_string())
                )
            }
            PresenceStatus::Away => {
                println!("#{} * {} is away", p.room, short(&p.session.to_string()))
            }
            PresenceStatus::Back => {
                println!("#{} * {} is back", p.room, short(&p.session.to_string()))
            }
        },
        ServerFrame::Joined(j) => println!("joined #{}: {} member(s)", j.room, j.members.len()),
        ServerFrame::Left { room, .. } => println!("left #{room}"),
        ServerFrame::Direct(d) => println!(
            "(direct) <{}> {}: {}",
            short(&d.from.to_string()),
            d.event,
            d.data
        ),
        ServerFrame::Error(e) => println!("error {}: {}", e.code.as_str(), e.message),
        // Acknowledgements, and frames of features this example does not use (examples/lobby.rs
        // shows them).
        _ => {}
    }
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
