//! The reconnecting client, `Parlor`, against a real node: through a relay that cuts its
//! connections it resumes with every missed frame once, in order, or, after the grace, starts
//! afresh and names the rooms it lost; no request hangs; requests from clones are in flight at
//! once; `wss://` through a TLS-terminating relay; a token; a close that means "stay away".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parlor_client::protocol::{
    ErrorCode, LeaveReason, PresenceStatus, RoomFilter, ServerFrame, StateOp, Value,
};
use parlor_client::{
    Answer, ClientError, ConnectionState, Event, Events, Parlor, ReconnectPolicy, TypedData,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::common::*;

/// A TCP relay in front of a node. `cut` resets every connection through it (the client sees a
/// reset, the node a dropped connection) and every new one until `restore`; `stall` holds what
/// clients send (their requests stay unanswered) until it is lifted, and `mute` what the node
/// sends.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stall: watch::Sender<bool>,
    mute: watch::Sender<bool>,
    pairs: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay binds");
        let addr = listener.local_addr().expect("relay address");
        let cut = Arc::new(AtomicBool::new(false));
        let (stall, stalled) = watch::channel(false);
        let (mute, muted) = watch::channel(false);
        let pairs: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, pairs) = (cut.clone(), pairs.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    reset_on_drop(&client);
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: reset at once
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        continue;
                    };
                    reset_on_drop(&server);
                    let pipe = tokio::spawn(pipe(client, server, stalled.clone(), muted.clone()));
                    pairs.lock().unwrap().push(pipe.abort_handle());
                }
            }
        });
        Relay {
            addr,
            cut,
            stall,
            mute,
            pairs,
            accept: accept.abort_handle(),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Resets every connection, and every new one until `restore`.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for pair in self.pairs.lock().unwrap().drain(..) {
            pair.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Holds (true) or lets through (false) what clients send.
    fn stall(&self, on: bool) {
        self.stall.send_replace(on);
    }

    /// Holds (true) or lets through (false) what the node sends: with `stall`, a connection
    /// that is open but carries nothing, as after a cable is pulled.
    fn mute(&self, on: bool) {
        self.mute.send_replace(on);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// With a linger of zero, dropping a socket sends a reset rather than a FIN.
fn reset_on_drop(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
}

/// Copies both ways until either side ends; client bytes wait while `up` is held, server
/// bytes while `down` is.
async fn pipe(
    mut client: TcpStream,
    mut server: TcpStream,
    up: watch::Receiver<bool>,
    down: watch::Receiver<bool>,
) {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    tokio::select! {
        () = copy_held(client_read, server_write, up) => {}
        () = copy_held(server_read, client_write, down) => {}
    }
}

async fn copy_held(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut held: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buf).await;
        // The end of the stream is held too: a held side hears nothing, not even a close.
        while *held.borrow_and_update() {
            if held.changed().await.is_err() {
                return;
            }
        }
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn config(grace_ms: u64) -> parlor::Config {
    let mut config = test_config();
    config.session.reconnect_grace_ms = grace_ms;
    // Stalled clients send no pongs: the server must not time them out meanwhile.
    config.session.client_timeout_ms = 5_000;
    config
}

/// Reconnects quickly, so the tests do not wait for the default half second.
fn fast() -> ReconnectPolicy {
    ReconnectPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: None,
    }
}

async fn connect_through(relay: &Relay) -> (Parlor, Events) {
    Parlor::builder(relay.url())
        .reconnect(fast())
        .connect()
        .await
        .expect("connects through the relay")
}

/// Skips events until one matches, failing the test after 10 s.
async fn event_matching(events: &mut Events, what: &str, f: impl Fn(&Event) -> bool) -> Event {
    within(10, what, async {
        loop {
            let event = events.recv().await.expect("events go on until Closed");
            if f(&event) {
                return event;
            }
        }
    })
    .await
}

/// The value of an `n` event in `room`.
fn numbered(event: &Event, room: &str) -> Option<i64> {
    match event {
        Event::RoomEvent(e) if e.room == room && e.event == "n" => e.data_as().ok(),
        _ => None,
    }
}

#[tokio::test]
async fn a_cut_client_reconnects_by_itself_and_resumes_with_every_missed_frame_once_in_order() {
    let node = start(config(10_000));
    let relay = Relay::start(node.addr).await;
    let (parlor, mut events) = connect_through(&relay).await;
    let session = parlor.session_id();
    parlor.join("stream").await.expect("join");
    let mut peer = connect(&node).await;
    peer.join("stream").await.expect("peer joins");

    let mut got = Vec::new();
    for n in 0..5i64 {
        peer.emit("stream", "n", Value::from(n), false)
            .await
            .expect("emit");
    }
    while got.len() < 5 {
        let event = event_matching(&mut events, "a live event", |e| {
            numbered(e, "stream").is_some()
        })
        .await;
        got.extend(numbered(&event, "stream"));
    }

    relay.cut();
    event_matching(
        &mut events,
        "reconnecting",
        |e| matches!(e, Event::Reconnecting(r) if r.attempt == 1 && r.close.code == 1006),
    )
    .await;
    assert!(matches!(
        parlor.state(),
        ConnectionState::Reconnecting { .. }
    ));
    // The node holds the session (away) while the peer goes on emitting.
    next_matching(&mut peer, "the client away", |f| {
        matches!(f, ServerFrame::Presence(p) if p.session == session && p.status == PresenceStatus::Away)
    })
    .await;
    for n in 5..25i64 {
        peer.emit("stream", "n", Value::from(n), false)
            .await
            .expect("emit while the client is away");
    }
    relay.restore();

    let mut resumed = None;
    within(10, "every event up to 30", async {
        let mut live_sent = false;
        while got.len() < 30 {
            let event = events.recv().await.expect("events");
            if let Event::Resumed(r) = &event {
                resumed = Some(r.clone());
            }
            got.extend(numbered(&event, "stream"));
            if resumed.is_some() && got.len() >= 25 && !live_sent {
                live_sent = true;
                for n in 25..30i64 {
                    peer.emit("stream", "n", Value::from(n), false)
                        .await
                        .expect("emit after the resume");
                }
            }
        }
    })
    .await;
    let resumed = resumed.expect("a Resumed event before the replay");
    assert_eq!(resumed.session, session);
    assert_eq!(resumed.recovered, ["stream"]);
    assert!(
        resumed.snapshot.is_empty() && resumed.lost.is_empty(),
        "{resumed:?}"
    );
    // Nothing comes twice, even a little later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(event) = events.try_recv() {
        got.extend(numbered(&event, "stream"));
    }
    assert_eq!(
        got,
        (0..30).collect::<Vec<i64>>(),
        "every event once, in order"
    );
    assert_eq!(parlor.session_id(), session);
    assert_eq!(parlor.state(), ConnectionState::Open);
}

#[tokio::test]
async fn after_the_grace_the_client_starts_a_fresh_session_and_names_the_rooms_it_lost() {
    let node = start(config(300));
    let relay = Relay::start(node.addr).await;
    let (parlor, mut events) = connect_through(&relay).await;
    let previous = parlor.session_id();
    parlor.join("a").await.expect("join a");
    parlor.join("b").await.expect("join b");
    let mut peer = connect(&node).await;
    peer.join("a").await.expect("peer joins");
    let listed = parlor
        .subscribe_lobby(RoomFilter::default())
        .await
        .expect("lobby");
    assert_eq!(listed.len(), 2);

    relay.cut();
    event_matching(&mut events, "reconnecting", |e| {
        matches!(e, Event::Reconnecting(_))
    })
    .await;
    next_matching(&mut peer, "the client gone for good", |f| {
        matches!(f, ServerFrame::Presence(p) if p.session == previous
            && p.status == PresenceStatus::Left && p.reason == Some(LeaveReason::Timeout))
    })
    .await;
    relay.restore();

    let Event::Reset(reset) =
        event_matching(&mut events, "reset", |e| matches!(e, Event::Reset(_))).await
    else {
        unreachable!()
    };
    assert_eq!(reset.previous, previous);
    assert_ne!(reset.session, previous);
    assert_eq!(reset.lost, ["a", "b"]);
    assert_eq!(reset.refusal.map(|e| e.code), Some(ErrorCode::ResumeFailed));
    assert_eq!(parlor.session_id(), reset.session);
    // The lobby subscription is made again: room `b` went with the old session.
    let Event::LobbyRooms(rooms) = event_matching(&mut events, "the lobby again", |e| {
        matches!(e, Event::LobbyRooms(_))
    })
    .await
    else {
        unreachable!()
    };
    let names: Vec<&str> = rooms.iter().map(|r| r.room.as_str()).collect();
    assert_eq!(names, ["a"]);
    // The fresh session works: it joins again and the peer sees it.
    let joined = within(5, "join again", parlor.join("a"))
        .await
        .expect("join again");
    assert!(joined.members.contains(&reset.session));
    next_matching(&mut peer, "the new session joining", |f| {
        matches!(f, ServerFrame::Presence(p) if p.session == reset.session && p.status == PresenceStatus::Joined)
    })
    .await;
}

#[tokio::test]
async fn a_connection_that_goes_silent_counts_as_lost_and_the_session_resumes() {
    // The node pings every 200 ms; the client gives up on a connection silent for that and
    // the node's timeout (here 1 s), even though TCP itself reports nothing.
    let mut config = config(10_000);
    config.session.client_timeout_ms = 1_000;
    let node = start(config);
    let relay = Relay::start(node.addr).await;
    let (parlor, mut events) = connect_through(&relay).await;
    parlor.join("quiet").await.expect("join");

    let started = Instant::now();
    relay.stall(true);
    relay.mute(true);
    let Event::Reconnecting(reconnecting) = event_matching(&mut events, "reconnecting", |e| {
        matches!(e, Event::Reconnecting(_))
    })
    .await
    else {
        unreachable!()
    };
    assert!(started.elapsed() >= Duration::from_millis(1_000));
    assert_eq!(reconnecting.close.code, 1006);
    assert!(
        reconnecting.close.reason.contains("no sign of life"),
        "{reconnecting:?}"
    );
    relay.stall(false);
    relay.mute(false);
    let Event::Resumed(resumed) =
        event_matching(&mut events, "resumed", |e| matches!(e, Event::Resumed(_))).await
    else {
        unreachable!()
    };
    assert_eq!(resumed.recovered, ["quiet"]);
}

#[tokio::test]
async fn no_request_hangs_across_a_cut_and_one_that_waits_goes_out_after_the_reconnect() {
    let node = start(config(10_000));
    let relay = Relay::start(node.addr).await;
    let (parlor, mut events) = connect_through(&relay).await;
    parlor.join("room").await.expect("join");
    let mut peer = connect(&node).await;
    peer.join("room").await.expect("peer joins");

    // A timeout: the relay holds the request, so no answer comes.
    relay.stall(true);
    let started = Instant::now();
    let timed_out = within(
        2,
        "the timeout",
        parlor
            .with_timeout(Duration::from_millis(200))
            .emit("room", "held", &1),
    )
    .await;
    assert!(
        matches!(timed_out, Err(ClientError::Timeout)),
        "{timed_out:?}"
    );
    assert!(timed_out.unwrap_err().is_outcome_unknown());
    assert!(started.elapsed() < Duration::from_secs(2));

    // Pending at the cut: it fails as soon as the connection ends.
    let pending = tokio::spawn({
        let parlor = parlor.clone();
        async move { parlor.emit("room", "pending", &2).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "held by the relay");
    relay.cut();
    relay.stall(false);
    let pending = within(2, "the pending request", pending).await.unwrap();
    assert!(
        matches!(pending, Err(ClientError::Disconnected { sent: true })),
        "{pending:?}"
    );
    event_matching(&mut events, "reconnecting", |e| {
        matches!(e, Event::Reconnecting(_))
    })
    .await;

    // Made while cut: refused at once, not sent.
    let started = Instant::now();
    let refused = within(2, "the refusal", parlor.emit("room", "while-cut", &3)).await;
    assert!(
        matches!(refused, Err(ClientError::Disconnected { sent: false })),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    // Waiting for the reconnect, with a timeout shorter than the cut: never sent.
    let gave_up = within(
        2,
        "the timeout while waiting",
        parlor
            .waiting_for_reconnect()
            .with_timeout(Duration::from_millis(200))
            .emit("room", "gave-up", &4),
    )
    .await;
    assert!(matches!(gave_up, Err(ClientError::Timeout)), "{gave_up:?}");

    // Waiting for the reconnect: it goes out once the session is back.
    let waiting = tokio::spawn({
        let parlor = parlor.waiting_for_reconnect();
        async move { parlor.emit("room", "after", &5).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "waits for the reconnect");
    relay.restore();
    within(10, "the waiting request", waiting)
        .await
        .unwrap()
        .expect("sent after the reconnect and answered");
    event_matching(&mut events, "resumed", |e| matches!(e, Event::Resumed(_))).await;
    // Held at the cut, never sent, or sent after it: only the last reached the room.
    let event = next_matching(
        &mut peer,
        "an event from the client",
        |f| matches!(f, ServerFrame::Event(e) if e.room == "room"),
    )
    .await;
    let ServerFrame::Event(event) = event else {
        unreachable!()
    };
    assert_eq!(event.event, "after");
}

#[tokio::test]
async fn requests_from_clones_are_in_flight_at_once_and_each_gets_its_own_answer() {
    let node = start(config(0));
    let relay = Relay::start(node.addr).await;
    let (parlor, _events) = connect_through(&relay).await;
    parlor.join("busy").await.expect("join");
    let mut peer = connect(&node).await;
    peer.join("busy").await.expect("peer joins");
    let peer_session = peer.session_id();

    // Held by the relay, every request is sent before any is answered.
    relay.stall(true);
    let mut emits = Vec::new();
    for n in 0..10i64 {
        let parlor = parlor.clone();
        emits.push(tokio::spawn(
            async move { parlor.emit("busy", "n", &n).await },
        ));
    }
    // Refused by the connection itself, at once: its answer overtakes those of the emits
    // before it (PROTOCOL.md section 8), so only matching by ref answers it right.
    let too_deep = tokio::spawn({
        let parlor = parlor.clone();
        let deep = (0..40).fold(Value::Nil, |inner, _| Value::Array(vec![inner]));
        async move { parlor.emit("busy", "deep", &deep).await }
    });
    let again = tokio::spawn({
        let parlor = parlor.clone();
        async move { parlor.join("busy").await }
    });
    let conflict = tokio::spawn({
        let parlor = parlor.clone();
        async move {
            let op = StateOp::Set {
                path: vec!["k".into()],
                value: Value::from(1),
            };
            parlor.update_state("busy", vec![op], Some(99)).await
        }
    });
    let second = tokio::spawn({
        let parlor = parlor.clone();
        async move { parlor.join("second").await }
    });
    let listed = tokio::spawn({
        let parlor = parlor.clone();
        async move { parlor.list_rooms(RoomFilter::default(), None).await }
    });
    let direct = tokio::spawn({
        let parlor = parlor.clone();
        async move { parlor.send(peer_session, "hi", &"there").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(emits.iter().all(|e| !e.is_finished()) && !listed.is_finished());
    relay.stall(false);

    for emit in emits {
        within(5, "an emit", emit).await.unwrap().expect("emit ok");
    }
    let too_deep = within(5, "the deep emit", too_deep).await.unwrap();
    assert_eq!(too_deep.unwrap_err().code(), Some(ErrorCode::TooDeep));
    let again = within(5, "join again", again).await.unwrap();
    assert_eq!(
        again.map_err(|e| e.code()).unwrap_err(),
        Some(ErrorCode::AlreadyJoined)
    );
    let conflict = within(5, "the conflict", conflict).await.unwrap();
    assert_eq!(
        conflict.unwrap_err().code(),
        Some(ErrorCode::VersionConflict)
    );
    let second = within(5, "join second", second).await.unwrap();
    assert_eq!(second.expect("joined").room, "second");
    let listed = within(5, "the list", listed).await.unwrap().expect("rooms");
    assert!(
        listed.iter().any(|r| r.room == "busy" && r.members == 2),
        "{listed:?}"
    );
    within(5, "the direct", direct)
        .await
        .unwrap()
        .expect("sent");
    let got = next_matching(&mut peer, "the direct", |f| {
        matches!(f, ServerFrame::Direct(_))
    })
    .await;
    let ServerFrame::Direct(got) = got else {
        unreachable!()
    };
    assert_eq!(got.data_as::<String>().expect("a string"), "there");
    // The generic request answers with what the frame asks for.
    let answer = parlor
        .request(parlor_client::protocol::ClientFrame::UnsubscribeLobby { reference: None })
        .await
        .expect("ok");
    assert_eq!(answer, Answer::Done);
}

#[tokio::test]
async fn a_server_that_reads_nothing_does_not_stop_the_client_reading() {
    let node = start(config(0));
    let relay = Relay::start(node.addr).await;
    let (parlor, mut events) = connect_through(&relay).await;
    parlor.join("flood").await.expect("join");
    let mut peer = connect(&node).await;
    peer.join("flood").await.expect("peer joins");

    // Far more than the sockets on the way buffer, held by the relay: the client's writes
    // cannot all go out, and must not stop it from reading.
    relay.stall(true);
    let blob = "x".repeat(60_000);
    let mut floods = Vec::new();
    for _ in 0..300 {
        let (parlor, blob) = (parlor.clone(), blob.clone());
        floods.push(tokio::spawn(async move {
            parlor.emit("flood", "blob", &blob).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.emit("flood", "n", Value::from(1), false)
        .await
        .expect("the peer emits");
    let heard = within(3, "the peer's event", async {
        loop {
            let event = events.recv().await.expect("events");
            if let Some(n) = numbered(&event, "flood") {
                return n;
            }
        }
    })
    .await;
    assert_eq!(heard, 1);
    relay.cut();
    for flood in floods {
        let result = within(5, "a held request", flood).await.unwrap();
        assert!(
            matches!(result, Err(ClientError::Disconnected { .. })),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn a_close_that_means_stay_away_ends_the_client_for_good() {
    let node = start(config(10_000));
    let (parlor, mut events) = Parlor::builder(node.ws_url())
        .reconnect(fast())
        .connect()
        .await
        .expect("connect");
    parlor.join("taken").await.expect("join");
    // Another connection takes the session over: the server closes this one with 4002.
    let mut other = connect(&node).await;
    let token = parlor.welcome().resume_token.clone();
    other
        .resume(parlor.session_id(), &token, Vec::new())
        .await
        .expect("resume elsewhere");

    let Event::Closed(closed) =
        event_matching(&mut events, "closed", |e| matches!(e, Event::Closed(_))).await
    else {
        unreachable!()
    };
    assert_eq!(closed.close.code, 4002);
    assert!(!closed.close.should_reconnect());
    assert!(closed.close.explain().contains("another"));
    assert_eq!(parlor.state(), ConnectionState::Closed);
    assert!(within(2, "the end of events", events.recv())
        .await
        .is_none());
    match parlor.with_timeout(Duration::from_secs(2)).join("x").await {
        Err(ClientError::Closed(Some(frame))) => assert_eq!(u16::from(frame.code), 4002),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test]
async fn close_leaves_at_once_and_the_last_event_says_so() {
    let node = start(config(10_000));
    let (parlor, mut events) = Parlor::connect(&node.ws_url()).await.expect("connect");
    parlor.join("bye").await.expect("join");
    let mut peer = connect(&node).await;
    peer.join("bye").await.expect("peer joins");
    let session = parlor.session_id();
    within(5, "close", parlor.close()).await;
    next_matching(&mut peer, "the client leaving", |f| {
        matches!(f, ServerFrame::Presence(p) if p.session == session && p.reason == Some(LeaveReason::Closed))
    })
    .await;
    let Event::Closed(closed) =
        event_matching(&mut events, "closed", |e| matches!(e, Event::Closed(_))).await
    else {
        unreachable!()
    };
    assert_eq!(closed.close.code, 1000);
    let late = within(2, "a request after close", parlor.emit("bye", "late", &())).await;
    assert!(matches!(late, Err(ClientError::Closed(_))), "{late:?}");
}

#[tokio::test]
async fn a_token_travels_as_the_bearer_subprotocol_and_a_refusal_says_why() {
    let node = crate::auth::hs256_node();
    let token = crate::auth::hs256(crate::auth::claims("alice"), crate::auth::SECRET);
    let (parlor, _events) = Parlor::builder(node.ws_url())
        .token(token)
        .connect()
        .await
        .expect("admitted");
    assert_eq!(parlor.welcome().user.as_deref(), Some("alice"));
    match Parlor::connect(&node.ws_url()).await {
        Err(ClientError::Rejected { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "token_missing"))
        }
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
}

/// A TLS-terminating relay with a self-signed certificate for `localhost`, in front of `target`;
/// the certificate, to trust.
async fn tls_relay(
    target: SocketAddr,
) -> (
    SocketAddr,
    tokio_rustls::rustls::pki_types::CertificateDer<'static>,
) {
    use tokio_rustls::rustls::{self, pki_types::PrivatePkcs8KeyDer};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (addr, cert)
}

#[tokio::test]
async fn wss_through_a_tls_relay_with_the_certificate_trusted() {
    let node = start(test_config());
    let (addr, cert) = tls_relay(node.addr).await;
    let url = format!("wss://localhost:{}/ws", addr.port());

    let mut roots = parlor_client::rustls::RootCertStore::empty();
    roots.add(cert).expect("a valid certificate");
    let tls = parlor_client::tls_config(roots).expect("tls config");
    let (parlor, mut events) = Parlor::builder(&url)
        .tls_config(tls.clone())
        .connect()
        .await
        .expect("connects over TLS");
    let joined = parlor.join("secure").await.expect("join");
    assert_eq!(joined.members, [parlor.session_id()]);
    parlor
        .emit_echo("secure", "n", &7)
        .await
        .expect("emit over TLS");
    let event = event_matching(&mut events, "the echo", |e| numbered(e, "secure").is_some()).await;
    assert_eq!(numbered(&event, "secure"), Some(7));

    // The low-level client takes the same settings.
    let options = parlor_client::ConnectOptions::default().tls_config(tls);
    let mut client = parlor_client::Client::connect_with(&url, &options)
        .await
        .expect("low-level client over TLS");
    client.join("secure").await.expect("join");

    // Without the certificate trusted (the default roots), the connection is refused.
    let untrusted = Parlor::connect(&url).await.map(|_| ());
    assert!(
        matches!(&untrusted, Err(ClientError::WebSocket(_))),
        "{untrusted:?}"
    );
    assert!(
        format!("{:?}", untrusted.unwrap_err()).contains("UnknownIssuer"),
        "the certificate is the reason"
    );
}
