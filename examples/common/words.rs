//! Sentences for people, shared by the terminal examples (`#[path]`-included, not an example
//! of its own): why a request failed, why a connection could not be made or ended, and what
//! the reconnecting client is doing. No error codes and no debug dumps on the screen.

use std::time::Duration;

use parlor_client::protocol::{ErrorCode, LeaveReason};
use parlor_client::tungstenite;
use parlor_client::{ClientError, Event};

/// Why a request failed.
pub fn request_failed(err: &ClientError) -> String {
    match err {
        ClientError::Disconnected { sent: false } => {
            "Not sent: the connection is down (reconnecting).".into()
        }
        ClientError::Disconnected { sent: true } => {
            "The connection dropped before the server confirmed it; it may or may not have gone through.".into()
        }
        ClientError::Timeout => {
            "No answer from the server in time; it may or may not have gone through.".into()
        }
        ClientError::Closed(_) => "Not sent: the connection is closed.".into(),
        ClientError::Refused(frame) => refused(frame.code)
            .map(String::from)
            .unwrap_or_else(|| format!("The server refused: {}.", frame.message)),
        other => other.to_string(),
    }
}

fn refused(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::NotInRoom => "You are not in that room.",
        ErrorCode::AlreadyJoined => "You are already in that room.",
        ErrorCode::TooManyRooms => "You are in too many rooms; leave one first.",
        ErrorCode::RoomFull => "That room is full.",
        ErrorCode::RoomLocked => "That room is locked by its owner.",
        ErrorCode::WrongPassword => "Wrong password (or none given).",
        ErrorCode::NotOwner => "Only the room's owner can do that.",
        ErrorCode::RoomNotFound => "There is no room by that name.",
        ErrorCode::RoomExists => "A room by that name exists already.",
        ErrorCode::UnknownSession => "No such player in your rooms.",
        ErrorCode::InvalidRoom => "That room name is empty or too long.",
        ErrorCode::InvalidEvent => "That event name is empty or too long.",
        ErrorCode::InvalidOptions => "Those room settings are out of bounds.",
        ErrorCode::VersionConflict => "Someone changed it first; try again.",
        ErrorCode::StateTooLarge => "The room's shared state is full.",
        ErrorCode::RoomLimit => "The server has too many rooms; try again later.",
        ErrorCode::Overloaded => "The server is busy; try again.",
        ErrorCode::RateLimited => "Slow down: you are sending too fast.",
        ErrorCode::Forbidden => "Your token does not let you into that room.",
        ErrorCode::Unavailable => {
            "The server cannot reach the rest of its cluster right now; try again in a moment."
        }
        ErrorCode::OutcomeUnknown => {
            "The server could not confirm it; it may or may not have happened."
        }
        _ => return None,
    })
}

/// Why connecting to `url` failed, as a sentence.
pub fn connect_failed(url: &str, err: &ClientError) -> String {
    let hint = match err {
        ClientError::WebSocket(err)
            if matches!(&**err, tungstenite::Error::Io(io)
            if io.kind() == std::io::ErrorKind::ConnectionRefused) =>
        {
            " Is the server running?"
        }
        _ => "",
    };
    format!("Could not connect to {url}: {}.{hint}", cause(err))
}

/// The cause of a failed connection, as a clause.
fn cause(err: &ClientError) -> String {
    match err {
        ClientError::Rejected { code, message, .. } => match code.as_str() {
            "token_missing" => "the server needs a token (pass --token)".into(),
            "token_expired" => "your token has expired".into(),
            "token_not_yet_valid" => "your token is not valid yet".into(),
            "bad_signature" | "wrong_algorithm" | "invalid_token" => {
                "the server does not accept your token".into()
            }
            "origin_not_allowed" => "the server does not accept this origin".into(),
            "too_many_connections" => "the server is full".into(),
            "rate_limited" => "too many connections from this address; wait a little".into(),
            _ => format!("the server refused ({message})"),
        },
        ClientError::ConnectTimeout(_) => "the server did not answer in time".into(),
        ClientError::WebSocket(err) => match &**err {
            tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "nothing is listening there".into()
            }
            tungstenite::Error::Io(io) => format!("the network failed ({io})"),
            tungstenite::Error::Url(_) => "that is not a ws:// or wss:// address".into(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// How a member left, after their name ("bob left", "bob lost the connection").
pub fn left_because(reason: Option<LeaveReason>) -> &'static str {
    match reason {
        Some(LeaveReason::Leave) | None => "left",
        Some(LeaveReason::Closed) => "closed the connection",
        Some(LeaveReason::Dropped) => "lost the connection",
        Some(LeaveReason::Timeout) => "timed out",
        Some(LeaveReason::SlowConsumer) => "fell too far behind",
        Some(LeaveReason::ProtocolError) => "was disconnected for a protocol error",
        Some(LeaveReason::Kicked) => "was removed",
        Some(LeaveReason::RateLimited) => "was disconnected for sending too fast",
        Some(LeaveReason::NodeLost) => "was lost with their server",
        Some(LeaveReason::Ended) => "left as the room ended",
    }
}

/// A line about the connection for the events that concern it (`None` for the others).
pub fn connection_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Reconnecting(r) if r.attempt == 1 => {
            format!(
                "{} Reconnecting in {}…",
                r.close.explain(),
                seconds(r.delay)
            )
        }
        Event::Reconnecting(r) => {
            let why = r
                .error
                .as_deref()
                .map(|err| format!(" ({})", cause(err)))
                .unwrap_or_default();
            format!(
                "Still cannot reach the server{why}; trying again in {} (attempt {}).",
                seconds(r.delay),
                r.attempt
            )
        }
        Event::Resumed(r) if r.snapshot.is_empty() && r.lost.is_empty() => {
            "Reconnected; nothing was missed.".into()
        }
        Event::Resumed(r) => {
            let mut line = String::from("Reconnected.");
            if !r.snapshot.is_empty() {
                line += &format!(
                    " Caught up {} from a snapshot: messages sent meanwhile were skipped.",
                    rooms(&r.snapshot)
                );
            }
            if !r.lost.is_empty() {
                line += &format!(" You are no longer in {}.", rooms(&r.lost));
            }
            line
        }
        Event::Reset(r) if r.lost.is_empty() => "Reconnected as a new session.".into(),
        Event::Reset(r) => format!(
            "Reconnected, but the server had let your session go: you were in {}.",
            rooms(&r.lost)
        ),
        Event::Closed(c) => match &c.error {
            Some(err) => format!(
                "Disconnected: {} Gave up reconnecting: {}.",
                c.close.explain(),
                cause(err)
            ),
            None => format!("Disconnected: {}", c.close.explain()),
        },
        _ => return None,
    })
}

fn rooms(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("#{name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn seconds(delay: Duration) -> String {
    format!("{:.1} s", delay.as_secs_f64())
}
