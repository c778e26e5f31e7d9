//! `Link`: a node's two connections to Redis and the tasks that keep them.
//!
//! Commands go through one queue to one multiplexed connection, sent as pipelines in the order
//! they were queued: the order a session's requests reach Redis is the order it sent them, and
//! a busy node sends many commands per round trip. Calls of one function on the same keys that
//! queue up together (a room's emits) are joined into one call, each answered with its own part
//! of the reply (`Command::Joinable`): one function call and one publish carry them all, which is
//! most of what Redis spends on an emit. Subscriptions live on a second connection;
//! its messages go to the node as `LinkEvent`s through a bounded channel, and a message that
//! does not fit is dropped and counted (the room notices the gap and reads it back from the
//! room's stream). Both connections come back on their own, with backoff, and say so.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::cluster_routing::Slot;
use redis::Value as Reply;
use tokio::sync::{mpsc, oneshot};

use super::keys::Keys;
use super::store::LinkError;
use crate::config::redacted_url;

/// Commands queued but not yet sent; beyond this a call is refused at once.
const CALL_QUEUE: usize = 16_384;
/// Commands sent in one pipeline at most.
const PIPELINE: usize = 512;
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Backoff stops growing here, so a Redis that comes back is found again within a second.
const RETRY_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the link tells the node.
#[derive(Debug)]
pub enum LinkEvent {
    /// A frame on the channel of room `room`'s incarnation `epoch`.
    Room {
        room: String,
        epoch: String,
        payload: Bytes,
    },
    /// A message in this node's inbox.
    Inbox(Bytes),
    /// A room's listing changed.
    Lobby(String),
    /// The subscription to this room incarnation's channel is in place.
    Subscribed { room: String, epoch: String },
    /// The command connection is up (functions loaded) or down.
    Commands(bool),
    /// The subscription connection is up (every wanted channel subscribed) or down.
    Subscriptions(bool),
}

/// Where the cluster lives in Redis, and who this node is.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The Redis server (with a Redis Cluster, any one of its nodes: it carries every node's
    /// publishes, and subscriptions are made there).
    pub url: String,
    /// Whether `url` is a node of a Redis Cluster.
    pub cluster: bool,
    pub keys: Keys,
    pub node: String,
    /// The Lua library, loaded on every connect (on every primary of a Redis Cluster).
    pub library: &'static str,
}

impl LinkConfig {
    pub fn inbox_channel(&self) -> String {
        self.keys.inbox(&self.node)
    }

    pub fn lobby_channel(&self) -> String {
        self.keys.lobby()
    }
}

/// Where a call's reply goes: to a waiting future, or, by token, into the node's reply stream
/// (one stream the actor drains, rather than one future per call for it to poll).
enum Answer {
    Oneshot(oneshot::Sender<Result<Reply, LinkError>>),
    Token(u64),
}

/// What a call runs.
pub enum Command {
    Plain(redis::Cmd),
    /// One argument of `FCALL function keys... common arg...`, a function that takes any
    /// number of them after one `common` to all and answers with an array, one answer per
    /// argument in order. Joinable calls of the same function, keys and common argument
    /// queued together run as one call; a plain command between them keeps its place (nothing
    /// is joined across it).
    Joinable {
        function: &'static str,
        /// Shared by a room's calls (the node keeps them per room): cloned, not rebuilt.
        keys: Arc<[String]>,
        common: Bytes,
        arg: Vec<u8>,
    },
}

struct Call {
    cmd: Command,
    answer: Answer,
}

/// A call's reply, for the call with this token.
#[derive(Debug)]
pub struct Replied {
    pub token: u64,
    pub reply: Result<Reply, LinkError>,
}

/// Replies waiting for the node; when it is full, the command task waits for it.
pub const REPLY_QUEUE: usize = 4096;

impl Call {
    /// Hands over the reply; false if the node has gone.
    async fn answer(
        self,
        reply: Result<Reply, LinkError>,
        replies: &mpsc::Sender<Replied>,
    ) -> bool {
        match self.answer {
            Answer::Oneshot(tx) => {
                let _ = tx.send(reply);
                true
            }
            Answer::Token(token) => replies.send(Replied { token, reply }).await.is_ok(),
        }
    }
}

enum Subscription {
    Add(String),
    Remove(String),
}

#[derive(Clone)]
pub struct Link {
    calls: mpsc::Sender<Call>,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    commands_up: Arc<AtomicBool>,
    /// Channel messages dropped because the node was behind.
    pub dropped: Arc<AtomicU64>,
}

impl Link {
    /// Starts the link's tasks on the current (actix) runtime; events go to `events`, the
    /// replies to `call_with_token` to `replies`.
    pub fn start(
        config: LinkConfig,
        events: mpsc::Sender<LinkEvent>,
        replies: mpsc::Sender<Replied>,
    ) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| format!("cluster.redis_url: {e}"))?;
        let (calls, call_queue) = mpsc::channel(CALL_QUEUE);
        let (subscriptions, subscription_queue) = mpsc::unbounded_channel();
        let commands_up = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        actix::spawn(run_commands(
            client.clone(),
            config.clone(),
            call_queue,
            Arc::clone(&commands_up),
            events.clone(),
            replies,
        ));
        actix::spawn(run_subscriptions(
            client,
            config,
            subscription_queue,
            events,
            Arc::clone(&dropped),
        ));
        Ok(Self {
            calls,
            subscriptions,
            commands_up,
            dropped,
        })
    }

    /// Queues `cmd` now (so calls reach Redis in the order they were made) and answers with
    /// its reply. Refused at once while Redis is down or the queue is full.
    pub fn call(
        &self,
        cmd: redis::Cmd,
    ) -> impl std::future::Future<Output = Result<Reply, LinkError>> + 'static {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue(Command::Plain(cmd), Answer::Oneshot(reply));
        async move {
            queued?;
            answer.await.unwrap_or(Err(LinkError::Unanswered))
        }
    }

    /// Queues `cmd` now; its reply comes back on the reply stream with `token`. Refused at once
    /// (and nothing comes back) while Redis is down or the queue is full.
    pub fn call_with_token(&self, cmd: Command, token: u64) -> Result<(), LinkError> {
        self.queue(cmd, Answer::Token(token))
    }

    fn queue(&self, cmd: Command, answer: Answer) -> Result<(), LinkError> {
        if !self.commands_up.load(Ordering::Acquire) {
            return Err(LinkError::Down);
        }
        self.calls
            .try_send(Call { cmd, answer })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => LinkError::Busy,
                mpsc::error::TrySendError::Closed(_) => LinkError::Down,
            })
    }

    pub fn subscribe(&self, channel: String) {
        let _ = self.subscriptions.send(Subscription::Add(channel));
    }

    pub fn unsubscribe(&self, channel: String) {
        let _ = self.subscriptions.send(Subscription::Remove(channel));
    }
}

async fn run_commands(
    client: redis::Client,
    config: LinkConfig,
    mut queue: mpsc::Receiver<Call>,
    up: Arc<AtomicBool>,
    events: mpsc::Sender<LinkEvent>,
    replies: mpsc::Sender<Replied>,
) {
    let mut retry = RETRY_FIRST;
    let mut reported_down = false;
    loop {
        let connection = connect_commands(&client, &config).await;
        let mut connection = match connection {
            Ok(connection) => connection,
            Err(err) => {
                report_unreachable(&mut reported_down, &config.url, "commands", &err);
                if !fail_queued(&mut queue, &replies).await {
                    return;
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        retry = RETRY_FIRST;
        up.store(true, Ordering::Release);
        if events.send(LinkEvent::Commands(true)).await.is_err() {
            return;
        }
        tracing::info!(
            "cluster: command connection to Redis at {} is up",
            redacted_url(&config.url)
        );
        let ended = serve_commands(&mut connection, &mut queue, &replies).await;
        up.store(false, Ordering::Release);
        if ended
            || !fail_queued(&mut queue, &replies).await
            || events.send(LinkEvent::Commands(false)).await.is_err()
        {
            return;
        }
        tracing::warn!(
            "cluster: lost the command connection to Redis at {}; reconnecting",
            redacted_url(&config.url)
        );
        // That was the outage's warning; the retries that follow log at DEBUG.
        reported_down = true;
    }
}

/// Logs that Redis cannot be reached: at WARN once per outage, with the URL (without its
/// credentials), and at DEBUG on every retry after, so a long outage does not fill the logs.
fn report_unreachable(
    reported: &mut bool,
    url: &str,
    connection: &str,
    err: &dyn std::fmt::Display,
) {
    if std::mem::replace(reported, true) {
        tracing::debug!("cluster: still cannot reach Redis for {connection}: {err}");
    } else {
        tracing::warn!(
            "cluster: cannot reach Redis at {} for {connection}: {err}; retrying at least \
             once a second",
            redacted_url(url)
        );
    }
}

/// The command connection: to one Redis, or to a Redis Cluster.
enum Commands {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

async fn connect_commands(
    client: &redis::Client,
    config: &LinkConfig,
) -> redis::RedisResult<Commands> {
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg("REPLACE").arg(config.library);
    if !config.cluster {
        let settings = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&settings)
            .await?;
        load.query_async::<Reply>(&mut connection).await?;
        return Ok(Commands::Single(connection));
    }
    let cluster = redis::cluster::ClusterClientBuilder::new(vec![config.url.clone()])
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(2)
        .build()?;
    let mut connection = cluster.get_async_connection().await?;
    // Routed to every primary.
    load.query_async::<Reply>(&mut connection).await?;
    Ok(Commands::Cluster(connection))
}

impl Commands {
    /// Runs `cmds` in order: one pipeline on one Redis. On a Redis Cluster, one pipeline per
    /// slot, in order within it, the slots' pipelines all under way at once (a cluster
    /// pipeline must stay in one slot; Redis orders nothing across slots anyway).
    /// `Err`: the connection failed, and none of the replies is known.
    async fn run(
        &mut self,
        cmds: Vec<redis::Cmd>,
    ) -> Result<Vec<redis::RedisResult<Reply>>, String> {
        match self {
            Commands::Single(connection) => {
                let count = cmds.len();
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                match pipe
                    .query_async::<Vec<redis::RedisResult<Reply>>>(connection)
                    .await
                {
                    Ok(results) if results.len() == count => Ok(results),
                    Ok(_) => Err("a pipeline's replies did not match its commands".into()),
                    Err(err) => Err(err.to_string()),
                }
            }
            Commands::Cluster(connection) => {
                let count = cmds.len();
                // Each slot's commands, with their places in the batch.
                let mut by_slot: Vec<(Option<Slot>, SlotCommands)> = Vec::new();
                for (place, cmd) in cmds.into_iter().enumerate() {
                    let slot = slot_of(&cmd);
                    match by_slot
                        .iter_mut()
                        .find(|(s, _)| slot.is_some() && *s == slot)
                    {
                        Some((_, group)) => group.push((place, cmd)),
                        None => by_slot.push((slot, vec![(place, cmd)])),
                    }
                }
                let pipeline_count = by_slot.len();
                let pipelines = by_slot.into_iter().map(|(_, group)| {
                    let mut connection = connection.clone();
                    async move {
                        let mut pipe = redis::pipe();
                        pipe.ignore_errors();
                        let places: Vec<usize> = group.iter().map(|(place, _)| *place).collect();
                        for (_, cmd) in group {
                            pipe.add_command(cmd);
                        }
                        let results = pipe
                            .query_async::<Vec<redis::RedisResult<Reply>>>(&mut connection)
                            .await;
                        (places, results)
                    }
                });
                let mut replies: Vec<Option<redis::RedisResult<Reply>>> =
                    (0..count).map(|_| None).collect();
                let mut failed = 0;
                for (places, results) in futures_util::future::join_all(pipelines).await {
                    match results {
                        Ok(results) if results.len() == places.len() => {
                            for (place, result) in places.into_iter().zip(results) {
                                replies[place] = Some(result);
                            }
                        }
                        Ok(_) => {
                            return Err("a pipeline's replies did not match its commands".into())
                        }
                        Err(err) => {
                            failed += 1;
                            for place in places {
                                replies[place] = Some(Err(redis::RedisError::from((
                                    redis::ErrorKind::Io,
                                    "a pipeline failed",
                                    err.to_string(),
                                ))));
                            }
                        }
                    }
                }
                if failed > 0 && failed == pipeline_count {
                    return Err("every pipeline of a batch failed".into());
                }
                Ok(replies.into_iter().flatten().collect())
            }
        }
    }
}

/// One slot's commands, each with its place in its batch.
type SlotCommands = Vec<(usize, redis::Cmd)>;

/// The slot of a command's first key (for `FCALL`, its first declared key); `None` if it has
/// none.
fn slot_of(cmd: &redis::Cmd) -> Option<Slot> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|arg| match arg {
            redis::Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first()?;
    let key = if name.eq_ignore_ascii_case(b"FCALL") || name.eq_ignore_ascii_case(b"FCALL_RO") {
        let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
        if keys == 0 {
            return None;
        }
        args.get(3)?
    } else {
        args.get(1)?
    };
    Some(Slot::for_key(key))
}

/// Sends queued calls in batches until the connection fails (false) or the node has gone
/// (true).
async fn serve_commands(
    connection: &mut Commands,
    queue: &mut mpsc::Receiver<Call>,
    replies: &mpsc::Sender<Replied>,
) -> bool {
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        if queue.recv_many(&mut batch, PIPELINE).await == 0 {
            return true;
        }
        // The batch takes the commands; the calls keep only where their answers go.
        let (cmds, parts) = join_calls(&mut batch);
        match connection.run(cmds).await {
            Ok(results) => {
                for (call, reply) in batch.drain(..).zip(split_replies(results, &parts)) {
                    if !call.answer(reply, replies).await {
                        return true;
                    }
                }
            }
            Err(err) => {
                tracing::debug!("cluster: a batch of commands failed: {err}");
                // These were written to Redis: it may run them whenever it reads them.
                for call in batch.drain(..) {
                    if !call.answer(Err(LinkError::Unanswered), replies).await {
                        return true;
                    }
                }
                return false;
            }
        }
    }
}

/// Fails every queued call; false if the node has gone.
async fn fail_queued(queue: &mut mpsc::Receiver<Call>, replies: &mpsc::Sender<Replied>) -> bool {
    while let Ok(call) = queue.try_recv() {
        if !call.answer(Err(LinkError::Down), replies).await {
            return false;
        }
    }
    true
}

async fn run_subscriptions(
    client: redis::Client,
    config: LinkConfig,
    mut requests: mpsc::UnboundedReceiver<Subscription>,
    events: mpsc::Sender<LinkEvent>,
    dropped: Arc<AtomicU64>,
) {
    let inbox = config.inbox_channel();
    let lobby = config.lobby_channel();
    let mut wanted: HashSet<String> = HashSet::from([inbox.clone()]);
    let mut retry = RETRY_FIRST;
    let mut reported_down = false;
    loop {
        let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                report_unreachable(&mut reported_down, &config.url, "subscriptions", &err);
                apply_queued(&mut requests, &mut wanted);
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
            Err(_) => {
                let err = format!("no answer within {CONNECT_TIMEOUT:?}");
                report_unreachable(&mut reported_down, &config.url, "subscriptions", &err);
                apply_queued(&mut requests, &mut wanted);
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        apply_queued(&mut requests, &mut wanted);
        let all: Vec<&String> = wanted.iter().collect();
        let mut subscribed = true;
        for chunk in all.chunks(1024) {
            if sink.subscribe(chunk).await.is_err() {
                subscribed = false;
                break;
            }
        }
        if !subscribed {
            tokio::time::sleep(retry).await;
            continue;
        }
        retry = RETRY_FIRST;
        if events.send(LinkEvent::Subscriptions(true)).await.is_err() {
            return;
        }
        if std::mem::take(&mut reported_down) {
            tracing::info!(
                "cluster: subscription connection to Redis at {} is up again",
                redacted_url(&config.url)
            );
        }
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let channel = message.get_channel_name();
                    let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                    let event = if channel == inbox {
                        // Messages between nodes are never dropped: while the node is behind,
                        // Redis holds them (up to its pub/sub output buffer limit).
                        if events.send(LinkEvent::Inbox(payload)).await.is_err() {
                            return;
                        }
                        continue;
                    } else if channel == lobby {
                        LinkEvent::Lobby(String::from_utf8_lossy(&payload).into_owned())
                    } else if let Some((room, epoch)) = config.keys.room_of_channel(channel) {
                        LinkEvent::Room {
                            room: room.to_owned(),
                            epoch: epoch.to_owned(),
                            payload,
                        }
                    } else {
                        continue;
                    };
                    // A room frame that does not fit is read back from the room's log.
                    match events.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    let ok = match request {
                        Subscription::Add(channel) => {
                            let ok = sink.subscribe(&channel).await.is_ok();
                            if ok {
                                let subscribed = config
                                    .keys
                                    .room_of_channel(&channel)
                                    .map(|(room, epoch)| LinkEvent::Subscribed {
                                        room: room.to_owned(),
                                        epoch: epoch.to_owned(),
                                    });
                                wanted.insert(channel.clone());
                                if let Some(subscribed) = subscribed {
                                    let _ = events.send(subscribed).await;
                                }
                            } else {
                                wanted.insert(channel);
                            }
                            ok
                        }
                        Subscription::Remove(channel) => {
                            wanted.remove(&channel);
                            sink.unsubscribe(&channel).await.is_ok()
                        }
                    };
                    if !ok {
                        break;
                    }
                }
            }
        }
        tracing::warn!(
            "cluster: lost the subscription connection to Redis at {}; reconnecting",
            redacted_url(&config.url)
        );
        reported_down = true;
        if events.send(LinkEvent::Subscriptions(false)).await.is_err() {
            return;
        }
    }
}

/// Takes in subscription changes made while there was no connection.
fn apply_queued(
    requests: &mut mpsc::UnboundedReceiver<Subscription>,
    wanted: &mut HashSet<String>,
) {
    while let Ok(request) = requests.try_recv() {
        match request {
            Subscription::Add(channel) => {
                wanted.insert(channel);
            }
            Subscription::Remove(channel) => {
                wanted.remove(&channel);
            }
        }
    }
}

/// The most calls joined into one, and the most bytes of their arguments: a joined emit's
/// frames go out as one channel message, and the nodes' subscription queue counts messages,
/// so a message stays about the size of a few frames' worth, not 256 of the largest.
const JOIN_MAX: usize = 256;
const JOIN_BYTES: usize = 64 * 1024;

/// Where a call's answer is in the replies to a batch's commands: the whole reply to command
/// `n`, or part `i` of it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Whole(usize),
    Of(usize, usize),
}

/// The commands that run `batch` (its calls' commands taken out), joinable calls of the same
/// function and keys joined up to the first plain command after them, and where each call's
/// answer will be.
fn join_calls(batch: &mut [Call]) -> (Vec<redis::Cmd>, Vec<Part>) {
    // Joined calls being built: the function and keys, the command's place, its arguments.
    struct Open {
        function: &'static str,
        keys: Arc<[String]>,
        common: Bytes,
        place: usize,
        args: Vec<Vec<u8>>,
        bytes: usize,
    }
    let mut built: Vec<Option<redis::Cmd>> = Vec::with_capacity(batch.len());
    let mut open: Vec<Open> = Vec::new();
    // The newest open call on each function and keys (a busy batch spans many rooms).
    type JoinKey = (&'static str, Arc<[String]>);
    let mut newest: HashMap<JoinKey, usize> = HashMap::new();
    let mut parts = Vec::with_capacity(batch.len());
    let close = |open: &mut Vec<Open>, built: &mut Vec<Option<redis::Cmd>>| {
        for o in open.drain(..) {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg(o.function).arg(o.keys.len());
            for key in o.keys.iter() {
                cmd.arg(key);
            }
            cmd.arg(&o.common[..]);
            for arg in &o.args {
                cmd.arg(arg);
            }
            built[o.place] = Some(cmd);
        }
    };
    for call in batch.iter_mut() {
        match std::mem::replace(&mut call.cmd, Command::Plain(redis::Cmd::new())) {
            Command::Plain(cmd) => {
                close(&mut open, &mut built);
                newest.clear();
                parts.push(Part::Whole(built.len()));
                built.push(Some(cmd));
            }
            Command::Joinable {
                function,
                keys,
                common,
                arg,
            } => {
                // Only the newest call on these keys may take it (one that is full, or has
                // another common argument, stays as it is: what comes after it goes after it).
                let key = (function, keys);
                let joined = newest.get(&key).map(|&i| &mut open[i]).filter(|o| {
                    o.common == common
                        && o.args.len() < JOIN_MAX
                        && o.bytes + arg.len() <= JOIN_BYTES
                });
                match joined {
                    Some(o) => {
                        parts.push(Part::Of(o.place, o.args.len()));
                        o.bytes += arg.len();
                        o.args.push(arg);
                    }
                    None => {
                        parts.push(Part::Of(built.len(), 0));
                        open.push(Open {
                            function,
                            keys: Arc::clone(&key.1),
                            common,
                            place: built.len(),
                            bytes: arg.len(),
                            args: vec![arg],
                        });
                        newest.insert(key, open.len() - 1);
                        built.push(None);
                    }
                }
            }
        }
    }
    close(&mut open, &mut built);
    (built.into_iter().flatten().collect(), parts)
}

/// Each call's answer from the replies to the commands `join_calls` made.
fn split_replies(
    results: Vec<redis::RedisResult<Reply>>,
    parts: &[Part],
) -> Vec<Result<Reply, LinkError>> {
    let mut results: Vec<Option<Result<Reply, LinkError>>> = results
        .into_iter()
        .map(|result| Some(result.map_err(|e| link_error(&e))))
        .collect();
    // A joined call's answers (or its failure, which is every part's), taken as handed over.
    let mut joined: HashMap<usize, Result<Vec<Option<Reply>>, LinkError>> = HashMap::new();
    let mismatch =
        || LinkError::Refused("a joined call's reply did not match its calls".to_owned());
    parts
        .iter()
        .map(|part| match *part {
            Part::Whole(n) => results
                .get_mut(n)
                .and_then(Option::take)
                .unwrap_or(Err(LinkError::Unanswered)),
            Part::Of(n, i) => {
                let answers = joined.entry(n).or_insert_with(|| {
                    match results.get_mut(n).and_then(Option::take) {
                        Some(Ok(Reply::Array(answers))) => {
                            Ok(answers.into_iter().map(Some).collect())
                        }
                        Some(Err(err)) => Err(err),
                        Some(Ok(_)) => Err(mismatch()),
                        None => Err(LinkError::Unanswered),
                    }
                });
                match answers {
                    Ok(answers) => answers
                        .get_mut(i)
                        .and_then(Option::take)
                        .ok_or_else(mismatch),
                    Err(err) => Err(err.clone()),
                }
            }
        })
        .collect()
}

/// What a command's error means for its call: not answered (it may have run), or refused.
fn link_error(err: &redis::RedisError) -> LinkError {
    if err.is_io_error() || err.is_timeout() {
        LinkError::Unanswered
    } else {
        LinkError::Refused(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(name: &str) -> Call {
        let (tx, _) = oneshot::channel();
        Call {
            cmd: Command::Plain(redis::cmd(name)),
            answer: Answer::Oneshot(tx),
        }
    }

    fn joinable(room: &str, arg: &str) -> Call {
        let (tx, _) = oneshot::channel();
        Call {
            cmd: Command::Joinable {
                function: "f",
                keys: Arc::from(vec![room.to_owned()]),
                common: Bytes::from_static(b"c"),
                arg: arg.as_bytes().to_vec(),
            },
            answer: Answer::Oneshot(tx),
        }
    }

    /// A batch of calls: plain commands, or one room's emits (room 0–2, common argument 0–1,
    /// an argument of 1 byte to a third of `JOIN_BYTES`).
    fn any_batch() -> impl proptest::strategy::Strategy<Value = Vec<(u8, u8, u8, usize)>> {
        proptest::collection::vec((0u8..5, 0u8..3, 0u8..2, 1usize..JOIN_BYTES / 3), 0..300)
    }

    proptest::proptest! {
        /// Joining never reorders: a room's calls run in the order they were queued, nothing
        /// moves past a plain command, and a joined call keeps to its bounds.
        #[test]
        fn joining_keeps_every_rooms_order_and_its_bounds(batch in any_batch()) {
            let mut calls: Vec<Call> = batch
                .iter()
                .map(|&(kind, room, common, size)| {
                    if kind == 0 {
                        return plain("PING");
                    }
                    let mut call = joinable(&room.to_string(), &"x".repeat(size));
                    if let Command::Joinable { common: c, .. } = &mut call.cmd {
                        *c = Bytes::from(vec![b'a' + common]);
                    }
                    call
                })
                .collect();
            let (cmds, parts) = join_calls(&mut calls);
            // Where each call runs: its command, then its place in it.
            let at: Vec<(usize, usize)> = parts
                .iter()
                .map(|p| match *p {
                    Part::Whole(n) => (n, 0),
                    Part::Of(n, i) => (n, i),
                })
                .collect();
            for i in 0..batch.len() {
                for j in i + 1..batch.len() {
                    let plain = batch[i].0 == 0 || batch[j].0 == 0;
                    if plain || batch[i].1 == batch[j].1 {
                        proptest::prop_assert!(at[i] < at[j], "call {} runs after call {}", i, j);
                    }
                }
            }
            for cmd in &cmds {
                let args = args(cmd);
                if args.first().map(String::as_str) == Some("FCALL") {
                    // FCALL f 1 <room> <common> <args...>
                    let calls = &args[5..];
                    let bytes: usize = calls.iter().map(String::len).sum();
                    proptest::prop_assert!(calls.len() <= JOIN_MAX);
                    proptest::prop_assert!(calls.len() == 1 || bytes <= JOIN_BYTES);
                }
            }
            // Every call answered from one place, none twice.
            let mut seen = std::collections::HashSet::new();
            proptest::prop_assert!(at.iter().all(|a| seen.insert(*a)));
        }
    }

    fn args(cmd: &redis::Cmd) -> Vec<String> {
        cmd.args_iter()
            .filter_map(|arg| match arg {
                redis::Arg::Simple(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_rooms_calls_queued_together_are_joined_up_to_a_plain_command() {
        let mut batch = vec![
            joinable("a", "1"),
            joinable("b", "2"),
            joinable("a", "3"),
            plain("PING"),
            joinable("a", "4"),
        ];
        let (cmds, parts) = join_calls(&mut batch);
        let cmds: Vec<Vec<String>> = cmds.iter().map(args).collect();
        assert_eq!(
            cmds,
            [
                vec!["FCALL", "f", "1", "a", "c", "1", "3"],
                vec!["FCALL", "f", "1", "b", "c", "2"],
                vec!["PING"],
                vec!["FCALL", "f", "1", "a", "c", "4"],
            ]
        );
        assert_eq!(
            parts,
            [
                Part::Of(0, 0),
                Part::Of(1, 0),
                Part::Of(0, 1),
                Part::Whole(2),
                Part::Of(3, 0)
            ]
        );
    }

    /// The common argument goes once per joined call; a call with another one is not joined,
    /// and what follows it does not go ahead of it.
    #[test]
    fn calls_join_only_with_the_same_common_argument() {
        let mut other = joinable("a", "2");
        if let Command::Joinable { common, .. } = &mut other.cmd {
            *common = Bytes::from_static(b"d");
        }
        let mut batch = vec![joinable("a", "1"), other, joinable("a", "3")];
        let (cmds, parts) = join_calls(&mut batch);
        let cmds: Vec<Vec<String>> = cmds.iter().map(args).collect();
        assert_eq!(
            cmds,
            [
                vec!["FCALL", "f", "1", "a", "c", "1"],
                vec!["FCALL", "f", "1", "a", "d", "2"],
                vec!["FCALL", "f", "1", "a", "c", "3"],
            ]
        );
        assert_eq!(parts, [Part::Of(0, 0), Part::Of(1, 0), Part::Of(2, 0)]);
    }

    #[test]
    fn a_full_call_stays_full_and_what_follows_goes_after_it() {
        let big = "x".repeat(JOIN_BYTES - 10);
        let mut batch = vec![
            joinable("a", &big),
            joinable("a", "second, too big for the first call"),
            joinable("a", "3"),
        ];
        let (cmds, parts) = join_calls(&mut batch);
        assert_eq!(cmds.len(), 2);
        assert_eq!(parts, [Part::Of(0, 0), Part::Of(1, 0), Part::Of(1, 1)]);
    }

    #[test]
    fn each_call_gets_its_part_of_a_joined_reply_or_its_failure() {
        let parts = [
            Part::Of(0, 0),
            Part::Whole(1),
            Part::Of(0, 1),
            Part::Of(2, 0),
        ];
        let results = vec![
            Ok(Reply::Array(vec![Reply::Int(10), Reply::Int(11)])),
            Ok(Reply::Okay),
            Err(redis::RedisError::from((redis::ErrorKind::Io, "gone"))),
        ];
        let answers = split_replies(results, &parts);
        assert_eq!(
            answers,
            [
                Ok(Reply::Int(10)),
                Ok(Reply::Okay),
                Ok(Reply::Int(11)),
                Err(LinkError::Unanswered)
            ]
        );
        // A joined reply shorter than its calls is refused for the calls it lacks.
        let answers = split_replies(
            vec![Ok(Reply::Array(vec![Reply::Int(1)]))],
            &[Part::Of(0, 0), Part::Of(0, 1)],
        );
        assert_eq!(answers[0], Ok(Reply::Int(1)));
        assert!(matches!(answers[1], Err(LinkError::Refused(_))));
    }
}
