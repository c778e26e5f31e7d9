//! Who may open a session: the origin allow-list, and with `[auth]` configured, a JWT (HS256
//! or RS256, checked by `jsonwebtoken`) taken from `Authorization: Bearer`, a `bearer.<jwt>`
//! entry of `Sec-WebSocket-Protocol`, or the `token` query parameter. Its `sub` becomes the
//! session's user id and its optional rooms claim the rooms it may enter.

use actix_web::http::header;
use actix_web::HttpRequest;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{AuthAlgorithm, AuthConfig};
use crate::registry::RoomPatterns;

/// The subprotocol a client offers beside `bearer.<jwt>`, and which the server then selects.
pub const SUBPROTOCOL: &str = "parlor";
/// The prefix of a token carried in `Sec-WebSocket-Protocol`.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// Why an upgrade was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required (Authorization: Bearer, a bearer.<jwt> subprotocol, or ?token=)")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (its nbf is in the future)")]
    NotYetValid,
    #[error("the token is signed with another algorithm than this server accepts")]
    WrongAlgorithm,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("origin {0:?} is not allowed")]
    Origin(String),
}

impl AuthError {
    /// A short, stable name for the error, for the JSON body of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadSignature => "bad_signature",
            Self::Invalid(_) => "invalid_token",
            Self::Origin(_) => "origin_not_allowed",
        }
    }
}

/// Who an admitted connection is.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub user: Option<String>,
    pub rooms: Option<RoomPatterns>,
}

/// Checks upgrades against the configuration.
pub struct Authenticator {
    verifier: Option<Verifier>,
    allowed_origins: Vec<String>,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
    rooms_claim: String,
    read_only_claim: String,
}

impl Authenticator {
    /// Reads the key (the RS256 PEM file) and prepares the validation.
    pub fn from_config(config: &AuthConfig) -> std::io::Result<Self> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let verifier = match config.algorithm {
            AuthAlgorithm::None => None,
            algorithm => {
                let (key, algorithm) = match algorithm {
                    AuthAlgorithm::RS256 => {
                        let pem = std::fs::read(&config.public_key_file).map_err(|err| {
                            invalid(format!(
                                "cannot read auth.public_key_file {}: {err}",
                                config.public_key_file.display()
                            ))
                        })?;
                        let key = DecodingKey::from_rsa_pem(&pem).map_err(|err| {
                            invalid(format!("auth.public_key_file is not an RSA PEM key: {err}"))
                        })?;
                        (key, Algorithm::RS256)
                    }
                    _ => (
                        DecodingKey::from_secret(config.secret.as_bytes()),
                        Algorithm::HS256,
                    ),
                };
                let mut validation = Validation::new(algorithm);
                validation.set_required_spec_claims(&["exp", "sub"]);
                // jsonwebtoken skips `nbf` unless asked, and allows 60 s of skew unless told.
                validation.validate_nbf = true;
                validation.leeway = config.leeway_seconds;
                if config.issuer.is_empty() {
                    validation.iss = None;
                } else {
                    validation.set_issuer(&[&config.issuer]);
                }
                if config.audience.is_empty() {
                    validation.validate_aud = false;
                } else {
                    validation.set_audience(&[&config.audience]);
                }
                Some(Verifier {
                    key,
                    validation,
                    rooms_claim: config.rooms_claim.clone(),
                    read_only_claim: config.read_only_claim.clone(),
                })
            }
        };
        Ok(Self {
            verifier,
            allowed_origins: config.allowed_origins.clone(),
        })
    }

    /// Whether upgrades need a token.
    pub fn requires_token(&self) -> bool {
        self.verifier.is_some()
    }

    /// Admits or refuses the upgrade request `req`.
    pub fn admit(&self, req: &HttpRequest) -> Result<Identity, AuthError> {
        self.check_origin(req)?;
        let Some(verifier) = &self.verifier else {
            return Ok(Identity::default());
        };
        let token = token_of(req).ok_or(AuthError::Missing)?;
        verifier.verify(&token)
    }

    fn check_origin(&self, req: &HttpRequest) -> Result<(), AuthError> {
        if self.allowed_origins.is_empty() {
            return Ok(());
        }
        // Only browsers send Origin, and only they need this protection; other clients can
        // write any Origin they like anyway.
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        if self.allowed_origins.iter().any(|allowed| allowed == origin) {
            Ok(())
        } else {
            Err(AuthError::Origin(origin.to_owned()))
        }
    }
}

impl Verifier {
    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|err| match err.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            other => AuthError::Invalid(format!("{other:?}")),
        })?;
        let claims = data.claims;
        let user = match claims.get("sub") {
            Some(serde_json::Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => {
                return Err(AuthError::Invalid(
                    "`sub` must be a non-empty string".into(),
                ))
            }
        };
        let rooms = patterns_claim(&claims, &self.rooms_claim)?;
        let reading = patterns_claim(&claims, &self.read_only_claim)?;
        let rooms = match (rooms, reading) {
            (rooms, None) => rooms.map(|r| RoomPatterns::new(&r)),
            // Read-only rooms without a rooms claim: every other room as before.
            (rooms, Some(reading)) => Some(
                RoomPatterns::new(&rooms.unwrap_or_else(|| vec!["*".to_owned()])).reading(&reading),
            ),
        };
        Ok(Identity {
            user: Some(user),
            rooms,
        })
    }
}

/// A claim holding a list of room-name patterns (`None`: absent or null).
fn patterns_claim(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<Vec<String>>, AuthError> {
    let invalid = || AuthError::Invalid(format!("`{name}` must be a list of strings"));
    match claims.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(patterns)) => patterns
            .iter()
            .map(|p| p.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

/// The credential of an `Authorization: Bearer <credential>` header, if the request has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The token the request carries, in order of preference: the Authorization header, a
/// subprotocol, the query string.
fn token_of(req: &HttpRequest) -> Option<String> {
    if let Some(bearer) = bearer_token(req) {
        return Some(bearer.to_owned());
    }
    let from_protocol = offered_subprotocols(req)
        .find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX).map(str::to_owned));
    if from_protocol.is_some() {
        return from_protocol;
    }
    web_query_token(req.query_string())
}

/// The subprotocols the upgrade offers, in order: the comma-separated entries of every
/// `Sec-WebSocket-Protocol` header line, since a client may split the list over several lines
/// (RFC 7230 section 3.2.2) and each line counts. Empty entries are skipped.
pub fn offered_subprotocols(req: &HttpRequest) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

fn web_query_token(query: &str) -> Option<String> {
    actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(query)
        .ok()?
        .into_inner()
        .remove("token")
}
