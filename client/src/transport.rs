//! Opening one connection, shared by the low-level `Client` and the reconnecting `Parlor`: the
//! upgrade request (with the `parlor` and `bearer.<jwt>` subprotocols when there is a token),
//! TLS with rustls for `wss://`, the server's HTTP refusals read into `ClientError::Rejected`,
//! and the wait for `welcome`; then reading frames off the socket.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use parlor_protocol::{decode_server, ServerFrame, WelcomeFrame};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::{ClientError, Result};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Depth allowed when decoding server frames: generous, since the server is trusted.
pub(crate) const SERVER_FRAME_DEPTH: usize = 128;

/// How long a connection may take, from the TCP connect to the server's `welcome`, unless
/// `ConnectOptions::connect_timeout` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// WebSocket settings for Parlor's small frames. tungstenite zeroes its whole read buffer
/// before each read, and its default of 128 KiB made `memset` 30% of the benchmark
/// generator's CPU; 8 KiB still takes many frames per read.
pub fn websocket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// How to open a connection.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// A JWT for a server with `[auth]`: sent as the subprotocol `bearer.<jwt>` beside
    /// `parlor` (PROTOCOL.md section 1) on every connection.
    pub token: Option<String>,
    /// The TLS settings for `wss://` (e.g. a private CA's roots, see `tls_config`); by
    /// default the Mozilla roots of `webpki-roots`.
    pub tls: Option<Arc<ClientConfig>>,
    /// From the TCP connect to `welcome`; `DEFAULT_CONNECT_TIMEOUT` when `None`.
    pub connect_timeout: Option<Duration>,
}

impl ConnectOptions {
    pub fn token(mut self, jwt: impl Into<String>) -> Self {
        self.token = Some(jwt.into());
        self
    }

    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
}

// The token is a credential: it stays out of logs and panics.
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.as_ref().map(|_| "<custom>"))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// A rustls client configuration that trusts `roots` (a private CA, or a test's self-signed
/// certificate), for `ConnectOptions::tls`. It names ring as its crypto provider, so it works
/// without a process-wide default provider.
pub fn tls_config(roots: rustls::RootCertStore) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configuration used for `wss://` unless another is given: the Mozilla roots, built once.
fn default_tls_config() -> Result<Arc<ClientConfig>> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = DEFAULT.get() {
        return Ok(config.clone());
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = tls_config(roots)?;
    Ok(DEFAULT.get_or_init(|| config).clone())
}

/// Opens a connection to `url` (`ws://` or `wss://`) and waits for `welcome`, within the
/// connect timeout.
pub(crate) async fn open(url: &str, options: &ConnectOptions) -> Result<(Ws, WelcomeFrame)> {
    let limit = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    match tokio::time::timeout(limit, open_now(url, options)).await {
        Ok(opened) => opened,
        Err(_) => Err(ClientError::ConnectTimeout(limit)),
    }
}

async fn open_now(url: &str, options: &ConnectOptions) -> Result<(Ws, WelcomeFrame)> {
    let mut request = url.into_client_request()?;
    if let Some(token) = &options.token {
        let protocols = HeaderValue::from_str(&format!("parlor, bearer.{token}"))
            .map_err(|_| ClientError::InvalidToken)?;
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocols);
    }
    let connector = if request.uri().scheme_str() == Some("wss") {
        Connector::Rustls(match &options.tls {
            Some(config) => config.clone(),
            None => default_tls_config()?,
        })
    } else {
        Connector::Plain
    };
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(websocket_config()),
        true,
        Some(connector),
    )
    .await
    .map_err(refusal)?;
    match read_frame(&mut ws).await? {
        ServerFrame::Welcome(welcome) => Ok((ws, welcome)),
        other => Err(ClientError::Unexpected(format!("{other:?} before welcome"))),
    }
}

/// The server's answer to an upgrade it refused: every HTTP error of Parlor's has the JSON
/// body `{"error": CODE, "message": TEXT}` (PROTOCOL.md section 1).
fn refusal(err: tungstenite::Error) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        #[serde(default)]
        message: String,
    }
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .and_then(|bytes| serde_json::from_slice::<Body>(bytes).ok());
            let reason = status.canonical_reason().unwrap_or("refused");
            let (code, message) = match body {
                Some(body) => (body.error, body.message),
                None => (reason.to_lowercase().replace(' ', "_"), reason.to_owned()),
            };
            ClientError::Rejected {
                status: status.as_u16(),
                code,
                message,
            }
        }
        other => other.into(),
    }
}

/// The next frame from the server, answering pings on the way.
pub(crate) async fn read_frame(ws: &mut Ws) -> Result<ServerFrame> {
    loop {
        match ws.next().await {
            Some(Ok(message)) => {
                if let Some(frame) = decode_message(message)? {
                    return Ok(frame);
                }
            }
            Some(Err(err)) => return Err(err.into()),
            None => return Err(ClientError::Closed(None)),
        }
    }
}

/// Decodes a binary message; control messages yield `None`, a close yields `Closed`.
pub(crate) fn decode_message(message: Message) -> Result<Option<ServerFrame>> {
    match message {
        Message::Binary(bytes) => Ok(Some(decode_server(&bytes, SERVER_FRAME_DEPTH)?)),
        Message::Close(frame) => Err(ClientError::Closed(frame)),
        Message::Text(text) => Err(ClientError::Unexpected(format!("text message {text:?}"))),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(None),
    }
}

/// Resets the TCP connection under `ws` when it is dropped, without a close frame, as a
/// crashed client would (the server then holds the session for its grace).
pub(crate) fn reset_on_drop(ws: &Ws) {
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
        _ => return,
    };
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}
