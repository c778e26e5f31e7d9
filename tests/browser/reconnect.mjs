// parlor.js in headless Chromium, reconnecting by itself. The script runs the `parlor` binary
// with JWT auth (HS256), so every connection and reconnection must carry its token, and two
// pages: Alice connects directly, Bob through a TCP relay in this script.
//
// 1. A cut: the relay resets Bob's connection (no close frame, as a lost network) and refuses
//    him for a while. A request in flight at the cut and one made during it reject at once
//    (`disconnected`); one made with waitForReconnect waits. Alice emits and changes the state
//    meanwhile. Once the relay lets him through, Bob's page resumes the same session: "resumed"
//    names the room as recovered, and the room saw every missed frame, once, in order.
// 2. A restart: the binary is stopped with SIGTERM (close 1001) and a new one started on the
//    same port. Requests meanwhile reject at once or wait, as asked; both pages reconnect by
//    themselves, and since the new process knows nothing of their sessions, they start fresh:
//    "reset" names the room lost, the Room hears "left" (reason `lost`), the lobby
//    subscription is made again, and the new sessions work.
// 3. A page without a token cannot connect, and says so (`connect_failed`). The lobby, given a
//    token in its address, connects as the token's user; without one, or with an expired or
//    malformed one, its status line says which and it shows a token field (screenshots
//    `lobby-sign-in.png`, and `lobby-sign-in-390.png` at 390 px); a bad token entered there is refused again, a good
//    one connects as its user, the field goes, and a room can be made.
//
// No request is left pending at the end. Run by tests/server/browser.rs:
//
//   node tests/browser/reconnect.mjs <parlor-binary> <artifact-dir> <chromium-path>
//
// Exits 0 on success; on failure prints why (and the server's log), saves screenshots, exits 1.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";

const [binary, artifacts, executablePath] = process.argv.slice(2);
if (!binary || !artifacts || !executablePath) {
  console.error("usage: node reconnect.mjs <parlor-binary> <artifact-dir> <chromium-path>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const ROOM = "reconnect-room";
const TIMEOUT = 15_000;
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function jwt(sub, expiresIn = 600) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + expiresIn })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

// ---- the server: the real binary, stopped with SIGTERM and started again on its port ----------

let serverLog = "";
function startServer(port) {
  const child = spawn(binary, ["--bind", `127.0.0.1:${port}`, "--config", "/dev/null"], {
    env: {
      ...process.env,
      RUST_LOG: "warn",
      PARLOR_AUTH_ALGORITHM: "HS256",
      PARLOR_AUTH_SECRET: SECRET,
      // Bob's session must outlive the cut; a loaded machine must not time pages out.
      PARLOR_SESSION_RECONNECT_GRACE_MS: "60000",
      PARLOR_SESSION_HEARTBEAT_INTERVAL_MS: "1000",
      PARLOR_SESSION_CLIENT_TIMEOUT_MS: "30000",
      PARLOR_SERVER_SHUTDOWN_TIMEOUT_MS: "3000",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr.on("data", (chunk) => { serverLog += chunk; });
  child.exited = new Promise((done) => child.on("exit", (code, signal) => done({ code, signal })));
  return child;
}

async function untilServes(base) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      if ((await fetch(`${base}health`)).ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the server at ${base} did not come up`);
    await sleep(50);
  }
}

async function stopServer(child) {
  child.kill("SIGTERM");
  const exit = await Promise.race([child.exited, sleep(TIMEOUT).then(() => null)]);
  if (!exit) throw new Error("the server did not exit within 15 s of SIGTERM");
  if (exit.code !== 0) throw new Error(`the server exited with ${JSON.stringify(exit)}`);
}

/**
 * A TCP relay to the server that can stall (stop passing bytes on, so a request stays
 * unanswered), cut every connection with a reset, and refuse new ones until reopened.
 */
async function startRelay(port) {
  const sockets = new Set();
  let open = true;
  let stalled = false;
  const server = createServer((client) => {
    if (!open) {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: "127.0.0.1", port });
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.on("error", () => b.destroy());
      a.on("close", () => { sockets.delete(a); b.destroy(); });
      a.on("data", (chunk) => { if (!stalled) b.write(chunk); });
    }
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return {
    ws: `ws://127.0.0.1:${server.address().port}/ws`,
    stall() { stalled = true; },
    cut() {
      open = false;
      stalled = false;
      for (const socket of sockets) socket.resetAndDestroy();
    },
    reopen() { open = true; },
    close() { server.close(); for (const socket of sockets) socket.destroy(); },
  };
}

// ---- the pages ----------------------------------------------------------------------------------

/**
 * Loads parlor.js in `page` and connects; `window.t` holds the client, a log of its
 * connection events, what its room saw, and every request made through `t.track`.
 */
async function setUp(page, wsUrl, token) {
  await page.evaluate(async ([wsUrl, token]) => {
    const { Parlor } = await import("/parlor.js");
    const t = (window.t = { log: [], events: [], lobbies: 0, open: new Set() });
    /** Follows a request: it is in `t.open` until it settles. */
    t.track = (name, promise) => {
      t.open.add(name);
      promise.then(() => t.open.delete(name), () => t.open.delete(name));
      return promise;
    };
    /** How `promise` settles, and how long it took (or `hung` after 3 s). */
    t.outcome = async (name, promise) => {
      const started = performance.now();
      const result = await Promise.race([
        t.track(name, promise).then(() => ({ ok: true }), (err) => ({ ok: false, code: err.code, message: err.message })),
        new Promise((done) => setTimeout(() => done({ hung: true }), 3000)),
      ]);
      return { ...result, ms: Math.round(performance.now() - started) };
    };
    t.parlor = await Parlor.connect(wsUrl, { token, reconnect: { minDelayMs: 100, maxDelayMs: 800 } });
    for (const type of ["reconnecting", "resumed", "reset", "close"]) {
      t.parlor.on(type, (e) => t.log.push({ type, ...e, error: e.error ? e.error.code : undefined, at: t.parlor.session }));
    }
    t.parlor.on("lobby", () => { t.lobbies++; });
    t.join = async () => {
      t.room = await t.parlor.join("reconnect-room");
      t.room.on("event", (e) => t.events.push(e.data.n));
      t.room.on("left", (frame) => t.log.push({ type: "room-left", reason: frame.reason }));
    };
  }, [wsUrl, token]);
}

const waitFor = (page, what, f, arg) =>
  page.waitForFunction(f, arg, { timeout: TIMEOUT }).catch((err) => {
    throw new Error(`waiting for ${what}: ${err.message.split("\n")[0]}`);
  });

function expect(ok, what) {
  if (!ok) throw new Error(what);
}

/** Checks an outcome from `t.outcome`: rejected with `code`, within `ms`. */
function rejectedAtOnce(outcome, code, what, ms = 500) {
  expect(!outcome.hung, `${what}: the request hung`);
  expect(!outcome.ok && outcome.code === code, `${what}: expected ${code}, got ${JSON.stringify(outcome)}`);
  expect(outcome.ms <= ms, `${what}: it took ${outcome.ms} ms to reject`);
}

// ---- the test ---------------------------------------------------------------------------------

const port = await freePort();
const base = `http://127.0.0.1:${port}/`;
let server = startServer(port);
// The server goes with this script, however it ends (tests/server/browser.rs sends SIGTERM to a
// script past its time limit).
process.on("exit", () => server.kill("SIGKILL"));
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    console.error(`reconnect test stopped by ${signal}; server log:\n${serverLog}`);
    process.exit(1);
  });
}
await untilServes(base);
// The binary embeds parlor.js: a stale build would test another client than this checkout's.
if (await (await fetch(`${base}parlor.js`)).text() !== readFileSync(new URL("../../web/parlor.js", import.meta.url), "utf8")) {
  console.error(`${binary} serves another parlor.js than web/parlor.js: rebuild it`);
  server.kill("SIGKILL");
  process.exit(1);
}
const relay = await startRelay(port);
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let alice, bob;
try {
  alice = await (await browser.newContext()).newPage();
  bob = await (await browser.newContext()).newPage();
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    page.on("pageerror", (err) => console.error(`${who} page error: ${err.message}`));
    await page.goto(`${base}health`);
  }
  await setUp(alice, `ws://127.0.0.1:${port}/ws`, jwt("alice"));
  await setUp(bob, relay.ws, jwt("bob"));
  expect(await alice.evaluate(() => t.parlor.user) === "alice", "alice's token named her");
  await alice.evaluate(() => t.join());
  await bob.evaluate(() => t.join());
  await alice.evaluate(() => t.parlor.subscribeLobby({}));
  await alice.evaluate(() => t.room.emit("move", { n: 0 }));
  await waitFor(bob, "the first event", () => t.events.length === 1);

  // ---- 1. a cut ------------------------------------------------------------------------------
  const bobSession = await bob.evaluate(() => t.parlor.session);
  relay.stall();
  await bob.evaluate(() => { t.inflight = t.outcome("inflight", t.room.emit("move", { n: "lost in the cut" })); });
  await sleep(200);
  expect(await bob.evaluate(() => t.open.has("inflight")), "the request in flight waits for its answer");
  relay.cut();
  rejectedAtOnce(await bob.evaluate(() => t.inflight), "disconnected", "a request in flight at the cut", TIMEOUT);
  await waitFor(bob, "reconnecting", () => t.parlor.state === "reconnecting");
  rejectedAtOnce(await bob.evaluate(() => t.outcome("during the cut", t.parlor.listRooms())), "disconnected", "a request during the cut");
  await bob.evaluate(() => {
    t.queued = t.outcome("queued", t.room.emit("move", { n: "queued" }, { waitForReconnect: true, echo: true }));
    t.queued.then((o) => { t.queuedOutcome = o; });
  });
  // Alice plays on while Bob is away.
  await waitFor(alice, "bob away", (s) => t.room.away.has(s), bobSession);
  for (let n = 1; n <= 5; n++) await alice.evaluate((n) => t.room.emit("move", { n }), n);
  await alice.evaluate(() => t.room.set(["grid", "1,1"], "#1f77b4"));
  await sleep(300);
  relay.reopen();
  await waitFor(bob, "the resume", () => t.log.some((e) => e.type === "resumed"));
  const resumed = await bob.evaluate(() => t.log.find((e) => e.type === "resumed"));
  expect(JSON.stringify([resumed.recovered, resumed.snapshot, resumed.lost]) === `[["${ROOM}"],[],[]]`,
    `resumed: ${JSON.stringify(resumed)}`);
  expect(await bob.evaluate(() => t.parlor.session) === bobSession, "bob kept his session");
  await waitFor(bob, "the missed frames", () => t.events.length >= 7);
  const seen = await bob.evaluate(() => t.events);
  expect(JSON.stringify(seen) === '[0,1,2,3,4,5,"queued"]', `bob's room saw ${JSON.stringify(seen)}`);
  const queued = await bob.evaluate(() => t.queued);
  expect(queued.ok, `the queued request: ${JSON.stringify(queued)}`);
  await waitFor(bob, "the state", () => t.room.state.grid?.["1,1"] === "#1f77b4");
  const [aliceState, bobState] = await Promise.all([alice, bob].map((p) => p.evaluate(() => JSON.stringify([t.room.state, t.room.version]))));
  expect(aliceState === bobState, `states differ: ${aliceState} vs ${bobState}`);
  await waitFor(alice, "bob back", (s) => !t.room.away.has(s), bobSession);
  const cutLog = await bob.evaluate(() => t.log);
  expect(cutLog.filter((e) => e.type === "reconnecting").every((e) => e.delay <= 800), `delays: ${JSON.stringify(cutLog)}`);
  console.log(`cut: bob resumed after ${cutLog.filter((e) => e.type === "reconnecting").length} attempts`);

  // ---- 2. a restart --------------------------------------------------------------------------
  const sessions = await Promise.all([alice, bob].map((p) => p.evaluate(() => t.parlor.session)));
  const lobbiesBefore = await alice.evaluate(() => t.lobbies);
  await stopServer(server);
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    await waitFor(page, `${who} reconnecting`, () => t.log.some((e) => e.type === "reconnecting" && e.code === 1001));
    rejectedAtOnce(await page.evaluate(() => t.outcome("while down", t.room.emit("move", { n: "nobody" }))), "disconnected", `${who}'s request while the server is down`);
    await page.evaluate(() => {
      t.waiting = t.outcome("waiting", t.parlor.listRooms({}, undefined, { waitForReconnect: true }));
    });
  }
  await sleep(1000); // attempts fail while nothing listens
  server = startServer(port);
  await untilServes(base);
  for (const [who, page, session] of [["alice", alice, sessions[0]], ["bob", bob, sessions[1]]]) {
    await waitFor(page, `${who}'s reset`, () => t.log.some((e) => e.type === "reset"));
    const reset = await page.evaluate(() => t.log.find((e) => e.type === "reset"));
    expect(reset.previous === session && reset.session !== session, `${who}'s reset: ${JSON.stringify(reset)}`);
    expect(JSON.stringify(reset.lost) === `["${ROOM}"]` && reset.error === "resume_failed", `${who}'s reset: ${JSON.stringify(reset)}`);
    expect(await page.evaluate(() => t.log.some((e) => e.type === "room-left" && e.reason === "lost") && t.parlor.rooms.size === 0),
      `${who}'s room heard it was lost`);
    const waiting = await page.evaluate(() => t.waiting);
    expect(waiting.ok, `${who}'s waiting request: ${JSON.stringify(waiting)}`);
    expect(await page.evaluate(() => t.parlor.state) === "open", `${who} is open`);
  }
  await waitFor(alice, "the lobby again", (n) => t.lobbies > n, lobbiesBefore);
  // The fresh sessions work: both join again and hear each other.
  await alice.evaluate(() => { t.events = []; return t.join(); });
  await bob.evaluate(() => { t.events = []; return t.join(); });
  await alice.evaluate(() => t.room.emit("move", { n: "after the restart" }));
  await waitFor(bob, "an event after the restart", () => t.events.includes("after the restart"));

  // ---- 3. no token --------------------------------------------------------------------------
  const refused = await alice.evaluate(async (url) => {
    const { Parlor } = await import("/parlor.js");
    return Parlor.connect(url, { reconnect: false }).then(() => "connected", (err) => err.code);
  }, `ws://127.0.0.1:${port}/ws`);
  expect(refused === "connect_failed", `without a token: ${refused}`);
  const lobby = await (await browser.newContext()).newPage();
  lobby.on("pageerror", (err) => console.error(`lobby page error: ${err.message}`));
  await lobby.goto(`${base}?token=${jwt("carol")}`);
  await lobby.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  expect(await lobby.inputValue("#name") === "carol", "the lobby took the token's user as the name");
  expect(!(await lobby.isVisible("#sign-in")), "a connected lobby shows no token field");
  for (const [query, words] of [
    ["", "This server needs a sign-in token"],
    [`?token=${jwt("carol", -3600)}`, "Your sign-in token has expired"],
    ["?token=not.a.jwt", "Your sign-in token is not valid for this server"],
  ]) {
    await lobby.goto(`${base}${query}`);
    await lobby.waitForSelector('body[data-connection="refused"]', { timeout: TIMEOUT });
    const status = await lobby.textContent("#status");
    expect(status.startsWith(words), `the lobby at ${query || "/"} says: ${status}`);
    expect(await lobby.isVisible("#sign-in #token"), `the lobby at ${query || "/"} offers a token field`);
  }
  // Refused, the lobby says so in words rather than fail with a script error.
  await lobby.click("#create-btn");
  await lobby.waitForSelector('#lobby-error[data-code="not_connected"]', { timeout: TIMEOUT });
  // The token field, at desktop width, then on a phone, where nothing may scroll sideways.
  await lobby.screenshot({ path: join(artifacts, "lobby-sign-in.png"), fullPage: true });
  await lobby.setViewportSize({ width: 390, height: 844 });
  const overflow = await lobby.evaluate(() => document.documentElement.scrollWidth);
  expect(overflow <= 390, `at 390 px the refused lobby is ${overflow} px wide`);
  await lobby.screenshot({ path: join(artifacts, "lobby-sign-in-390.png"), fullPage: true });
  // A token that is no better is refused again, the field kept; a good one connects.
  await lobby.fill("#token", "still.not.valid");
  await lobby.click("#token-connect");
  await lobby.waitForSelector('body[data-connection="refused"]', { timeout: TIMEOUT });
  expect((await lobby.textContent("#status")).startsWith("Your sign-in token is not valid"), "a bad token entered is refused");
  expect(await lobby.isVisible("#sign-in #token"), "the field stays for another try");
  await lobby.fill("#token", jwt("dave"));
  await lobby.click("#token-connect");
  await lobby.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  expect(await lobby.inputValue("#name") === "dave", "the lobby took the entered token's user as the name");
  expect(await lobby.textContent("#status") === "Connected.", `the lobby says: ${await lobby.textContent("#status")}`);
  expect(!(await lobby.isVisible("#sign-in")), "the token field goes once connected");
  expect(await lobby.textContent("#lobby-error") === "", "the error line is cleared once connected");
  await lobby.fill("#create-name", "dave-room");
  await lobby.click("#create-btn");
  await lobby.waitForSelector('#room-title:text-is("dave-room")', { timeout: TIMEOUT });

  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    const left = await page.evaluate(() => [...t.open]);
    expect(left.length === 0, `${who}'s requests still pending: ${left}`);
    const closes = await page.evaluate(() => t.log.filter((e) => e.type === "close"));
    expect(closes.length === 0, `${who} closed for good: ${JSON.stringify(closes)}`);
  }
  console.log("ok: resumed after a cut, reset after a restart, no request left pending");
} catch (err) {
  console.error(`reconnect test failed: ${err.message}`);
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    const log = await page?.evaluate(() => JSON.stringify(window.t?.log)).catch(() => "?");
    console.error(`${who}'s log: ${log}`);
    await page?.screenshot({ path: join(artifacts, `failed-reconnect-${who}.png`) }).catch(() => {});
  }
  console.error(`server log:\n${serverLog}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  relay.close();
  server.kill("SIGKILL");
}
