//! `ClientError`: everything a connection or a request can end in, for the low-level `Client`
//! and the reconnecting `Parlor` alike. The variants a request of `Parlor` can settle with say
//! whether the server may have carried it out (`is_outcome_unknown`), since that decides
//! whether sending it again is safe.

use std::time::Duration;

use parlor_protocol::{DecodeError, ErrorCode, ErrorFrame};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    WebSocket(Box<tungstenite::Error>),
    /// The connection closed. For `Parlor`: the client is closed for good (by `close`, by a
    /// close code that means "stay away", or because it gave up reconnecting), with the close
    /// frame that ended it; nothing was sent.
    #[error("the connection closed ({})", describe_close(.0))]
    Closed(Option<CloseFrame>),
    #[error("undecodable server frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("unexpected frame: {0}")]
    Unexpected(String),
    /// The server answered the request with an `error` frame (PROTOCOL.md section 10), e.g.
    /// `room_full`. On a cluster this includes `unavailable` (not carried out; may be sent
    /// again) and `outcome_unknown` (may or may not have been carried out).
    #[error("server refused the request: {} ({})", .0.code.as_str(), .0.message)]
    Refused(ErrorFrame),
    /// The server refused the WebSocket upgrade with an HTTP error and its JSON body
    /// (PROTOCOL.md section 1): e.g. 401 `token_expired`, 429 `rate_limited`.
    #[error("the server refused the connection: HTTP {status} {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// No `welcome` within the connect timeout.
    #[error("no welcome from the server within {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The token cannot travel in a `Sec-WebSocket-Protocol` header (a JWT always can).
    #[error("the token is not a valid subprotocol entry (a JWT has only letters, digits, '-', '_' and '.')")]
    InvalidToken,
    /// `Parlor`: no answer will come because the connection is gone. `sent: false`: the request
    /// was made while the client was reconnecting and was not sent (nothing happened; send it
    /// again when you like, or ask for `wait_for_reconnect`). `sent: true`: the connection ended
    /// after the request went out and before its answer came: the server may or may not have
    /// carried it out.
    #[error("{}", if *.sent {
        "the connection ended before the answer came; the request may or may not have been carried out"
    } else {
        "not connected (reconnecting); the request was not sent"
    })]
    Disconnected { sent: bool },
    /// `Parlor`: no answer within the request's timeout. Its outcome is UNKNOWN: the server may
    /// have carried it out (its late answer is dropped; a late `joined` still arrives as
    /// `Event::Joined`).
    #[error(
        "no answer within the request's timeout; the request may or may not have been carried out"
    )]
    Timeout,
    /// A value could not be turned into MessagePack (`emit` and the other typed helpers).
    #[error("cannot encode the value as MessagePack: {0}")]
    Encode(String),
    /// An event's data is not the type asked for (`TypedData::data_as`).
    #[error("the data is not of the expected type: {0}")]
    Data(String),
}

impl From<tungstenite::Error> for ClientError {
    fn from(err: tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(err))
    }
}

impl ClientError {
    /// The server's error frame, when the server refused a request.
    pub fn refusal(&self) -> Option<&ErrorFrame> {
        match self {
            Self::Refused(frame) => Some(frame),
            _ => None,
        }
    }

    /// The server's error code, when the server refused a request.
    pub fn code(&self) -> Option<ErrorCode> {
        self.refusal().map(|frame| frame.code)
    }

    /// Whether the request may or may not have been carried out: check (a state's version, a
    /// room's members) before sending it again. True for `Timeout`, `Disconnected { sent: true }`
    /// and the server's `outcome_unknown`.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            Self::Timeout | Self::Disconnected { sent: true } => true,
            Self::Refused(frame) => frame.code == ErrorCode::OutcomeUnknown,
            _ => false,
        }
    }
}

fn describe_close(frame: &Option<CloseFrame>) -> String {
    match frame {
        Some(frame) if frame.reason.is_empty() => format!("{}", u16::from(frame.code)),
        Some(frame) => format!("{} {}", u16::from(frame.code), frame.reason),
        None => "no close frame".into(),
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
