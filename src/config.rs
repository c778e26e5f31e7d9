//! Configuration: the embedded `config.toml` gives every default, a file and `PARLOR_*`
//! environment variables override it, and the result is checked before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The top-level `config.toml`, compiled in: the single source of default values.
pub const EMBEDDED_CONFIG: &str = include_str!("../config.toml");

/// Environment variables with this prefix override settings: `PARLOR_SECTION_KEY`.
pub const ENV_PREFIX: &str = "PARLOR_";

/// Largest `auth.leeway_seconds`.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// The longest `session.write_delay_ms` accepted.
pub const MAX_WRITE_DELAY_MS: u64 = 1000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub session: SessionConfig,
    pub limits: LimitsConfig,
    pub registry: RegistryConfig,
    pub rooms: RoomsConfig,
    pub rate_limits: RateLimitsConfig,
    pub auth: AuthConfig,
    pub api: ApiConfig,
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub store: LogicStoreConfig,
}

/// `[store]`: where a single node keeps rooms' logic (documents) between runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogicStoreConfig {
    pub dir: String,
    pub flush_ms: u64,
}

impl Default for LogicStoreConfig {
    fn default() -> Self {
        Self {
            dir: String::new(),
            flush_ms: 2000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub workers: usize,
    pub close_linger_ms: u64,
    pub shutdown_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub heartbeat_interval_ms: u64,
    pub client_timeout_ms: u64,
    pub outbound_budget_bytes: usize,
    pub reconnect_grace_ms: u64,
    pub write_delay_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_frame_bytes: usize,
    pub max_rooms_per_session: usize,
    pub max_members_per_room: usize,
    pub max_connections: usize,
    pub max_room_name_bytes: usize,
    pub max_event_name_bytes: usize,
    pub max_depth: usize,
    pub max_rooms: usize,
    pub max_state_bytes: usize,
    pub max_state_values: usize,
    pub max_metadata_bytes: usize,
    pub max_listed_rooms: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub queue_bytes: usize,
    /// Threads that run rooms' logic (ticks and timers); 0: one per core.
    #[serde(default)]
    pub logic_threads: usize,
}

impl RegistryConfig {
    /// The logic pool's size: `logic_threads`, or one thread per core.
    pub fn logic_threads(&self) -> usize {
        match self.logic_threads {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    pub state_patch_interval_ms: u64,
    pub lobby_interval_ms: u64,
    pub lobby_frame_bytes: usize,
    pub history_frames: usize,
    pub history_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub frames_per_second: u32,
    pub frame_burst: u32,
    pub bytes_per_second: u32,
    pub byte_burst: u32,
    pub violations_before_close: u32,
    pub connections_per_ip_per_second: u32,
    pub connection_burst: u32,
}

/// Which tokens the upgrade accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum AuthAlgorithm {
    /// No authentication: every session is anonymous.
    #[serde(rename = "none")]
    None,
    HS256,
    RS256,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub algorithm: AuthAlgorithm,
    pub secret: String,
    pub public_key_file: PathBuf,
    pub issuer: String,
    pub audience: String,
    pub leeway_seconds: u64,
    pub rooms_claim: String,
    pub read_only_claim: String,
    pub allowed_origins: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub redis_cluster: bool,
    pub node_id: String,
    pub node_ttl_ms: u64,
    pub key_prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("invalid setting `{key}`: {why}")]
    Invalid { key: String, why: String },
    #[error("unknown environment variable {name}: it names no setting (the form is PARLOR_<SECTION>_<KEY>, e.g. PARLOR_LIMITS_MAX_FRAME_BYTES)")]
    UnknownEnv { name: String },
}

impl Config {
    /// The embedded defaults alone, with no file and no environment.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_table(parse_table(EMBEDDED_CONFIG, "embedded config.toml")?)
    }

    /// Loads the configuration: the embedded defaults, overlaid by the file at `path` (or by
    /// `./config.toml` when `path` is `None` and that file exists), then by `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = parse_table(EMBEDDED_CONFIG, "embedded config.toml")?;
        let file = match path {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("config.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let overlay = parse_table(&text, &path.display().to_string())?;
            merge(&mut table, overlay, "")?;
        }
        apply_env(&mut table, env)?;
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|err| {
                ConfigError::Invalid {
                    key: err.path().to_string(),
                    // toml repeats the path on a second line; the key is already named.
                    why: err
                        .inner()
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field and range checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, why: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                why,
            })
        };
        let s = &self.session;
        let l = &self.limits;
        let c = &self.cluster;
        if !c.redis_url.is_empty() {
            if c.node_ttl_ms < 1000 {
                return invalid("cluster.node_ttl_ms", "must be at least 1000".into());
            }
            if c.key_prefix.is_empty() {
                return invalid("cluster.key_prefix", "must not be empty".into());
            }
            if c.node_id.contains(['\n', ' ', '{', '}']) {
                return invalid(
                    "cluster.node_id",
                    "must not hold spaces, newlines or braces".into(),
                );
            }
        }
        if s.heartbeat_interval_ms == 0 {
            return invalid(
                "session.heartbeat_interval_ms",
                "must be greater than 0".into(),
            );
        }
        if s.client_timeout_ms <= s.heartbeat_interval_ms {
            return invalid(
                "session.client_timeout_ms",
                format!(
                    "must be greater than heartbeat_interval_ms ({})",
                    s.heartbeat_interval_ms
                ),
            );
        }
        if s.write_delay_ms > MAX_WRITE_DELAY_MS {
            return invalid(
                "session.write_delay_ms",
                format!("must be at most {MAX_WRITE_DELAY_MS}"),
            );
        }
        if (1..1000).contains(&self.server.close_linger_ms) {
            return invalid(
                "server.close_linger_ms",
                "must be 0 or at least 1000 (see its comment in config.toml)".into(),
            );
        }
        let smallest_frame_limit = self.smallest_frame_limit();
        if l.max_frame_bytes < smallest_frame_limit {
            return invalid(
                "limits.max_frame_bytes",
                format!(
                    "must be at least {smallest_frame_limit} with these limits, or a client \
                     could not send a legal `resume` naming all its rooms or a `create` with \
                     the longest name, password and metadata"
                ),
            );
        }
        if self.registry.queue_bytes < l.max_frame_bytes.max(crate::engine::MIN_REQUEST_COST) {
            return invalid(
                "registry.queue_bytes",
                format!(
                    "must be at least limits.max_frame_bytes ({}), or the largest request \
                     could never be queued",
                    l.max_frame_bytes
                ),
            );
        }
        if !(100..=60_000).contains(&self.store.flush_ms) {
            return invalid("store.flush_ms", "must be from 100 to 60000".into());
        }
        if self.registry.logic_threads > 256 {
            return invalid("registry.logic_threads", "must be at most 256".into());
        }
        let largest_listing = l.max_room_name_bytes + l.max_metadata_bytes + 256;
        if self.rooms.lobby_frame_bytes < largest_listing {
            return invalid(
                "rooms.lobby_frame_bytes",
                format!(
                    "must hold one room's largest listing: at least {largest_listing} bytes \
                     (max_room_name_bytes + max_metadata_bytes + 256)"
                ),
            );
        }
        let largest_frame = self.largest_server_frame();
        if s.outbound_budget_bytes < largest_frame {
            return invalid(
                "session.outbound_budget_bytes",
                format!(
                    "must hold at least one largest frame ({largest_frame} bytes with these \
                     limits: a relayed client frame, a `joined` with the largest state, or a \
                     full room list)"
                ),
            );
        }
        for (key, value) in [
            ("limits.max_frame_bytes", l.max_frame_bytes),
            ("limits.max_rooms_per_session", l.max_rooms_per_session),
            ("limits.max_members_per_room", l.max_members_per_room),
            ("limits.max_connections", l.max_connections),
            ("limits.max_room_name_bytes", l.max_room_name_bytes),
            ("limits.max_event_name_bytes", l.max_event_name_bytes),
            ("limits.max_depth", l.max_depth),
            ("limits.max_rooms", l.max_rooms),
            ("limits.max_state_bytes", l.max_state_bytes),
            ("limits.max_state_values", l.max_state_values),
            ("limits.max_metadata_bytes", l.max_metadata_bytes),
            ("limits.max_listed_rooms", l.max_listed_rooms),
            ("registry.queue_bytes", self.registry.queue_bytes),
            (
                "rooms.lobby_interval_ms",
                self.rooms.lobby_interval_ms as usize,
            ),
        ] {
            if value == 0 {
                return invalid(key, "must be greater than 0".into());
            }
        }
        if l.max_room_name_bytes < 32 {
            return invalid(
                "limits.max_room_name_bytes",
                "must be at least 32, the length of the ids the server gives rooms".into(),
            );
        }
        if l.max_depth > 100 {
            return invalid("limits.max_depth", "must be at most 100".into());
        }
        let r = &self.rate_limits;
        for (key, rate, burst) in [
            (
                "rate_limits.frame_burst",
                r.frames_per_second,
                r.frame_burst,
            ),
            ("rate_limits.byte_burst", r.bytes_per_second, r.byte_burst),
            (
                "rate_limits.connection_burst",
                r.connections_per_ip_per_second,
                r.connection_burst,
            ),
        ] {
            if rate > 0 && burst < rate {
                return invalid(key, format!("must be at least the rate it bursts ({rate})"));
            }
        }
        if r.bytes_per_second > 0 && (r.byte_burst as usize) < l.max_frame_bytes {
            return invalid(
                "rate_limits.byte_burst",
                format!(
                    "must be at least limits.max_frame_bytes ({}), or the largest frame could                      never pass",
                    l.max_frame_bytes
                ),
            );
        }
        if self.rooms.history_frames > 0 && self.rooms.history_bytes < l.max_frame_bytes {
            return invalid(
                "rooms.history_bytes",
                format!(
                    "must be at least limits.max_frame_bytes ({}) when history is kept",
                    l.max_frame_bytes
                ),
            );
        }
        let a = &self.auth;
        match a.algorithm {
            AuthAlgorithm::None => {}
            AuthAlgorithm::HS256 if a.secret.len() < 32 => {
                return invalid(
                    "auth.secret",
                    "HS256 needs a secret of at least 32 bytes".into(),
                )
            }
            AuthAlgorithm::RS256 if a.public_key_file.as_os_str().is_empty() => {
                return invalid(
                    "auth.public_key_file",
                    "RS256 needs the PEM file of the public key".into(),
                )
            }
            _ => {}
        }
        if a.leeway_seconds > MAX_LEEWAY_SECONDS {
            return invalid(
                "auth.leeway_seconds",
                format!(
                    "must be at most {MAX_LEEWAY_SECONDS}: it allows for clock skew, not a \
                     grace period"
                ),
            );
        }
        if a.algorithm != AuthAlgorithm::None && a.rooms_claim.is_empty() {
            return invalid("auth.rooms_claim", "must name a claim".into());
        }
        if a.algorithm != AuthAlgorithm::None && a.read_only_claim.is_empty() {
            return invalid("auth.read_only_claim", "must name a claim".into());
        }
        if !self.api.key.is_empty() && self.api.key.len() < 16 {
            return invalid(
                "api.key",
                "must be empty (API off) or at least 16 bytes".into(),
            );
        }
        Ok(())
    }

    /// The smallest `max_frame_bytes` these limits allow: 1024, or more when the largest
    /// legal `resume` (every room of a session, with the longest names) or `create` (the
    /// longest name and password, the largest metadata) needs more. Both are bounded from
    /// above, with room for the keys and headers MessagePack adds.
    pub fn smallest_frame_limit(&self) -> usize {
        const FLOOR: usize = 1024;
        /// The frame's keys and the other fields: type, ref, session id, token, options...
        const ENVELOPE: usize = 256;
        /// A room position's keys, an epoch of 32 characters, an offset, headers.
        const POSITION: usize = 96;
        let l = &self.limits;
        let resume = ENVELOPE + l.max_rooms_per_session * (l.max_room_name_bytes + POSITION);
        let create = ENVELOPE
            + l.max_room_name_bytes
            + crate::registry::MAX_PASSWORD_BYTES
            + l.max_metadata_bytes;
        FLOOR.max(resume).max(create)
    }

    /// An upper bound on the largest frame the server may queue for one client, so that one
    /// such frame always fits the outbound budget: a relayed client frame, a `joined` carrying
    /// the largest state, metadata and member list, or a full `room_list`.
    pub fn largest_server_frame(&self) -> usize {
        const SESSION_ID_BYTES: usize = 37;
        const ROOM_INFO_OVERHEAD: usize = 256;
        let l = &self.limits;
        let relayed = l.max_frame_bytes;
        let joined = l.max_state_bytes
            + l.max_metadata_bytes
            + l.max_members_per_room * SESSION_ID_BYTES
            + 1024;
        let listing = l.max_listed_rooms * (l.max_metadata_bytes + ROOM_INFO_OVERHEAD);
        // A lobby frame's listings, plus the frame's own keys and array headers.
        let lobby = self.rooms.lobby_frame_bytes + 64;
        relayed.max(joined).max(listing).max(lobby) + crate::outbox::MAX_HEADER_BYTES
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.session.heartbeat_interval_ms)
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.session.client_timeout_ms)
    }

    pub fn reconnect_grace(&self) -> Duration {
        Duration::from_millis(self.session.reconnect_grace_ms)
    }

    pub fn write_delay(&self) -> Duration {
        Duration::from_millis(self.session.write_delay_ms)
    }

    /// This node's name in the cluster: the configured one, or a random one.
    pub fn node_id(&self) -> String {
        if self.cluster.node_id.is_empty() {
            format!("node-{}", uuid::Uuid::new_v4().simple())
        } else {
            self.cluster.node_id.clone()
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.server.shutdown_timeout_ms)
    }
}

/// `url` (a Redis URL) for the logs: without a user or password, nor the `user` and `pass`
/// query parameters a unix-socket URL may carry them in.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(an unreadable URL)".into();
    };
    // Both fail only for URLs that cannot have credentials, which is what is wanted anyway.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    if parsed.query().is_some() {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| !matches!(key.as_ref(), "user" | "username" | "pass" | "password"))
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    parsed.into()
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::Syntax {
            origin: origin.into(),
            message: err.to_string(),
        })
}

/// Overlays `overlay` onto `base`; keys unknown to `base` are reported with their full path.
fn merge(base: &mut toml::Table, overlay: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in overlay {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => {
                merge(inner, value, &path)?
            }
            (Some(slot), value) => *slot = value,
            (None, _) => {
                return Err(ConfigError::Invalid {
                    key: path,
                    why: "unknown setting".into(),
                })
            }
        }
    }
    Ok(())
}

/// Applies `PARLOR_SECTION_KEY=value` overrides. A value is read as a TOML value when it parses
/// as one (numbers, booleans), and as a string otherwise.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut known = Vec::new();
    for (section, inner) in table.iter() {
        if let toml::Value::Table(inner) = inner {
            for key in inner.keys() {
                known.push((section.clone(), key.clone()));
            }
        }
    }
    for (name, raw) in env {
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if suffix == "CONFIG" {
            continue; // the --config flag's own variable
        }
        let Some((section, key)) = known
            .iter()
            .find(|(section, key)| suffix.eq_ignore_ascii_case(&format!("{section}_{key}")))
        else {
            return Err(ConfigError::UnknownEnv { name });
        };
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        if let Some(toml::Value::Table(inner)) = table.get_mut(section) {
            inner.insert(key.clone(), value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_are_valid_and_match_the_documented_values() {
        let config = Config::embedded().unwrap();
        assert_eq!(config.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.session.heartbeat_interval_ms, 5000);
        assert_eq!(config.session.client_timeout_ms, 15000);
        assert_eq!(config.limits.max_frame_bytes, 64 * 1024);
        assert_eq!(config.limits.max_rooms_per_session, 16);
        assert_eq!(config.limits.max_members_per_room, 1000);
        assert_eq!(config.limits.max_connections, 10_000);
    }

    #[test]
    fn env_overrides_numbers_and_strings() {
        let dir = std::env::temp_dir().join("parlor-config-none");
        let config = Config::load(
            Some(&write(&dir, "")),
            env(&[
                ("PARLOR_LIMITS_MAX_FRAME_BYTES", "8192"),
                ("PARLOR_SERVER_BIND", "0.0.0.0:9"),
            ]),
        )
        .unwrap();
        assert_eq!(config.limits.max_frame_bytes, 8192);
        assert_eq!(config.server.bind.to_string(), "0.0.0.0:9");
    }

    #[test]
    fn unknown_env_variable_is_named() {
        let err = Config::load(
            Some(&write(&std::env::temp_dir().join("parlor-c1"), "")),
            env(&[("PARLOR_LIMITS_MAX_FRAMES", "1")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("PARLOR_LIMITS_MAX_FRAMES"),
            "{err}"
        );
    }

    #[test]
    fn file_errors_name_the_key_and_the_reason() {
        let path = write(
            &std::env::temp_dir().join("parlor-c2"),
            "[limits]\nmax_depth = \"deep\"\n",
        );
        let err = Config::load(Some(&path), []).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("limits.max_depth") && text.contains("invalid type"),
            "{text}"
        );

        let path = write(
            &std::env::temp_dir().join("parlor-c3"),
            "[limits]\nmax_dept = 3\n",
        );
        let text = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(
            text.contains("limits.max_dept") && text.contains("unknown"),
            "{text}"
        );

        let path = write(
            &std::env::temp_dir().join("parlor-c4"),
            "[session]\nheartbeat_interval_ms = 5000\nclient_timeout_ms = 4000\n",
        );
        let text = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(text.contains("session.client_timeout_ms"), "{text}");
    }

    #[test]
    fn short_lingers_that_actix_cannot_time_are_refused() {
        for (value, ok) in [(0, true), (1, false), (999, false), (1000, true)] {
            let var = (
                "PARLOR_SERVER_CLOSE_LINGER_MS".to_string(),
                value.to_string(),
            );
            let path = write(&std::env::temp_dir().join("parlor-c6"), "");
            assert_eq!(Config::load(Some(&path), [var]).is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn the_write_delay_is_off_by_default_and_at_most_a_second() {
        assert_eq!(Config::embedded().unwrap().write_delay(), Duration::ZERO);
        for (value, ok) in [(0, true), (1000, true), (1001, false)] {
            let var = (
                "PARLOR_SESSION_WRITE_DELAY_MS".to_string(),
                value.to_string(),
            );
            let path = write(&std::env::temp_dir().join("parlor-c-write-delay"), "");
            assert_eq!(Config::load(Some(&path), [var]).is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn the_token_leeway_is_five_seconds_and_at_most_five_minutes() {
        assert_eq!(Config::embedded().unwrap().auth.leeway_seconds, 5);
        for (value, ok) in [(0, true), (300, true), (301, false)] {
            let var = ("PARLOR_AUTH_LEEWAY_SECONDS".to_string(), value.to_string());
            let path = write(&std::env::temp_dir().join("parlor-c7"), "");
            assert_eq!(Config::load(Some(&path), [var]).is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn redis_urls_are_logged_without_credentials() {
        for (url, logged) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "redis://:hunter2@127.0.0.1:6379/0",
                "redis://127.0.0.1:6379/0",
            ),
            (
                "rediss://alice:hunter2@redis.example/3",
                "rediss://redis.example/3",
            ),
            (
                "redis+unix:///run/redis.sock?db=2&user=alice&pass=hunter2",
                "redis+unix:///run/redis.sock?db=2",
            ),
            (
                "unix:///run/redis.sock?pass=hunter2",
                "unix:///run/redis.sock",
            ),
            ("not a url hunter2", "(an unreadable URL)"),
        ] {
            assert_eq!(redacted_url(url), logged, "{url}");
        }
    }

    #[test]
    fn a_frame_limit_too_small_for_a_legal_resume_or_create_is_refused() {
        for (value, ok) in [(1, false), (1023, false), (4096, true)] {
            let var = (
                "PARLOR_LIMITS_MAX_FRAME_BYTES".to_string(),
                value.to_string(),
            );
            let path = write(&std::env::temp_dir().join("parlor-c8"), "");
            let loaded = Config::load(Some(&path), [var]);
            assert_eq!(loaded.is_ok(), ok, "{value}");
            if let Err(err) = loaded {
                assert!(err.to_string().contains("limits.max_frame_bytes"), "{err}");
            }
        }
        // More rooms per session need more room for a resume.
        let rooms = [
            (
                "PARLOR_LIMITS_MAX_FRAME_BYTES".to_string(),
                "4096".to_string(),
            ),
            (
                "PARLOR_LIMITS_MAX_ROOMS_PER_SESSION".to_string(),
                "64".to_string(),
            ),
        ];
        let path = write(&std::env::temp_dir().join("parlor-c9"), "");
        assert!(Config::load(Some(&path), rooms).is_err());
    }

    #[test]
    fn the_smallest_frame_limit_holds_the_largest_legal_resume_and_create() {
        use parlor_protocol::{encode_client, ClientFrame, RoomOptions, RoomPosition, SessionId};
        for (rooms, name_bytes, metadata_bytes) in [(16, 128, 1024), (1, 32, 1), (100, 1000, 9000)]
        {
            let mut config = Config::embedded().unwrap();
            config.limits.max_rooms_per_session = rooms;
            config.limits.max_room_name_bytes = name_bytes;
            config.limits.max_metadata_bytes = metadata_bytes;
            let limit = config.smallest_frame_limit();
            let name = |n: usize| format!("{n:0>name_bytes$}");
            let resume = ClientFrame::Resume {
                reference: Some(u64::MAX),
                session: SessionId::new_random(),
                token: "f".repeat(64),
                rooms: (0..rooms)
                    .map(|n| RoomPosition {
                        room: name(n),
                        epoch: "e".repeat(32),
                        offset: u64::MAX,
                    })
                    .collect(),
            };
            // Metadata whose encoding is as large as allowed: one string value.
            let mut metadata = parlor_protocol::Metadata::new();
            let value_bytes = metadata_bytes.saturating_sub(16).max(1);
            metadata.insert("k".into(), "v".repeat(value_bytes).into());
            let create = ClientFrame::Create {
                reference: Some(u64::MAX),
                room: Some(name(0)),
                options: RoomOptions {
                    max_members: Some(u32::MAX),
                    private: true,
                    password: Some("p".repeat(crate::registry::MAX_PASSWORD_BYTES)),
                    metadata,
                    dispose_when_empty: false,
                    room_type: None,
                    type_options: None,
                },
            };
            for frame in [resume, create] {
                let len = encode_client(&frame).len();
                assert!(
                    len <= limit,
                    "{len} > {limit} for {rooms} rooms, {name_bytes} B names"
                );
            }
        }
    }

    #[test]
    fn budget_must_hold_one_largest_frame() {
        let path = write(
            &std::env::temp_dir().join("parlor-c5"),
            "[session]\noutbound_budget_bytes = 1000\n",
        );
        let text = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(text.contains("session.outbound_budget_bytes"), "{text}");
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}
