// parlor.js in headless Chromium across the restart of a cluster node. The script starts a
// `redis-server` (a free port, append-only, in a temporary directory of its own) and two `parlor`
// nodes in cluster mode, A and B, with JWT auth, a node_ttl of 3 s and a reconnect grace of 20 s.
// Alice's page connects to A, Bob's to B; both are in one room, and Alice watches the lobby.
//
// 1. Within the grace: A is stopped with SIGTERM (a cluster node hands its sessions over to
//    Redis as orphans, away, and closes them with 1001) and started again on its port. Bob sees
//    Alice away, emits and changes the state meanwhile; Alice's requests reject at once
//    (`disconnected`) or wait, as asked. Alice's page reconnects to the new A by itself and
//    resumes the same session: "resumed" names the room as recovered, her room gets every event
//    Bob emitted meanwhile exactly once and in order, and the state; her waiting request goes
//    out; Bob sees her back; the lobby subscription is made again.
// 2. Past the grace: A, started this second time with a grace of 2 s (so that the test need
//    not wait 20 s: the grace of an orphan is its releasing node's), is stopped again and stays
//    down until Bob sees Alice leave (reason `timeout`: B's heartbeat expired the orphan). Once A
//    is back, Alice's page cannot resume: "reset" names the room lost (`resume_failed`), the
//    Room hears "left" (reason `lost`), and the fresh session joins again and hears Bob.
//
// No request is left pending at the end. Redis and the nodes are killed when the script ends,
// however it ends (SIGTERM and SIGINT included), and Redis's directory is removed. Run by
// tests/server/browser.rs:
//
//   node tests/browser/cluster.mjs <parlor-binary> <artifact-dir> <chromium-path>
//
// Exits 0 on success; on failure prints why (and the servers' logs), saves screenshots, exits 1.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [binary, artifacts, executablePath] = process.argv.slice(2);
if (!binary || !artifacts || !executablePath) {
  console.error("usage: node cluster.mjs <parlor-binary> <artifact-dir> <chromium-path>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const REDIS_SERVER = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].find(existsSync);
if (!REDIS_SERVER) {
  console.error("redis-server is missing: ./scripts/test installs it (apt-get install redis-server)");
  process.exit(1);
}
const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const ROOM = "cluster-room";
const TIMEOUT = 15_000;
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// ---- processes: every child is killed when this script exits, however it exits ----------------

const children = new Set();
const redisDir = mkdtempSync(join(tmpdir(), "parlor-browser-redis-"));
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(redisDir, { recursive: true, force: true });
});
let logs = "";
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    console.error(`cluster reconnect test stopped by ${signal}; servers' logs:\n${logs}`);
    process.exit(1);
  });
}

function run(name, command, args, env = {}) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  child.stderr.on("data", (chunk) => { logs += `[${name}] ${chunk}`; });
  child.exited = new Promise((done) => {
    child.on("exit", (code, signal) => { children.delete(child); done({ code, signal }); });
    child.on("error", (err) => { logs += `[${name}] ${err.message}\n`; children.delete(child); done({ error: err.message }); });
  });
  return child;
}

async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

async function until(what, check) {
  const deadline = Date.now() + TIMEOUT;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} within ${TIMEOUT} ms`);
    await sleep(50);
  }
}

const listening = (port) => new Promise((done) => {
  const socket = connect(port, "127.0.0.1", () => { socket.destroy(); done(true); });
  socket.on("error", () => done(false));
});

async function startRedis() {
  const port = await freePort();
  run("redis", REDIS_SERVER, [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
    "--appendfsync", "always", "--dir", redisDir,
  ]);
  await until("redis-server listening", () => listening(port));
  return `redis://127.0.0.1:${port}/0`;
}

/** A `parlor` node in cluster mode; resolves once its /health says Redis is up. */
async function startNode(name, port, redisUrl, graceMs) {
  const child = run(name, binary, ["--bind", `127.0.0.1:${port}`, "--config", "/dev/null"], {
    RUST_LOG: "warn",
    PARLOR_CLUSTER_REDIS_URL: redisUrl,
    PARLOR_CLUSTER_NODE_ID: name,
    PARLOR_CLUSTER_NODE_TTL_MS: "3000",
    PARLOR_SESSION_RECONNECT_GRACE_MS: String(graceMs),
    PARLOR_AUTH_ALGORITHM: "HS256",
    PARLOR_AUTH_SECRET: SECRET,
    // A loaded machine must not time pages out.
    PARLOR_SESSION_HEARTBEAT_INTERVAL_MS: "1000",
    PARLOR_SESSION_CLIENT_TIMEOUT_MS: "30000",
    PARLOR_SERVER_SHUTDOWN_TIMEOUT_MS: "3000",
  });
  await until(`node ${name} up with Redis`, async () => {
    if (child.exitCode !== null) throw new Error(`node ${name} exited with ${child.exitCode}`);
    const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    return health.cluster?.redis === "up";
  }).catch((err) => { throw child.exitCode !== null ? new Error(`node ${name} exited with ${child.exitCode}`) : err; });
  return child;
}

async function stopNode(child) {
  child.kill("SIGTERM");
  const exit = await Promise.race([child.exited, sleep(TIMEOUT).then(() => null)]);
  if (!exit) throw new Error("a node did not exit within 15 s of SIGTERM");
  if (exit.code !== 0) throw new Error(`a node exited with ${JSON.stringify(exit)}`);
}

function jwt(sub) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

// ---- the pages --------------------------------------------------------------------------------

/**
 * Loads parlor.js in `page` and connects; `window.t` holds the client, a log of its connection
 * events, the room's events (their `n`) and presence, and every request made through `t.track`.
 */
async function setUp(page, wsUrl, token) {
  await page.evaluate(async ([wsUrl, token, ROOM]) => {
    const { Parlor } = await import("/parlor.js");
    const t = (window.t = { log: [], events: [], presence: [], lobbies: 0, open: new Set() });
    t.track = (name, promise) => {
      t.open.add(name);
      promise.then(() => t.open.delete(name), () => t.open.delete(name));
      return promise;
    };
    /** How `promise` settles, and how long it took (or `hung` after `patience` ms). */
    t.outcome = async (name, promise, patience = 3000) => {
      const started = performance.now();
      const result = await Promise.race([
        t.track(name, promise).then(() => ({ ok: true }), (err) => ({ ok: false, code: err.code, message: err.message })),
        new Promise((done) => setTimeout(() => done({ hung: true }), patience)),
      ]);
      return { ...result, ms: Math.round(performance.now() - started) };
    };
    t.parlor = await Parlor.connect(wsUrl, { token, reconnect: { minDelayMs: 100, maxDelayMs: 800 } });
    for (const type of ["reconnecting", "resumed", "reset", "close"]) {
      t.parlor.on(type, (e) => t.log.push({ type, ...e, error: e.error ? e.error.code : undefined }));
    }
    t.parlor.on("lobby", () => { t.lobbies++; });
    t.join = async () => {
      t.room = await t.track("join", t.parlor.join(ROOM));
      t.room.on("event", (e) => t.events.push(e.data.n));
      t.room.on("presence", (p) => t.presence.push(`${p.session} ${p.status}${p.reason ? ` ${p.reason}` : ""}`));
      t.room.on("left", (frame) => t.log.push({ type: "room-left", reason: frame.reason }));
    };
  }, [wsUrl, token, ROOM]);
}

const waitFor = (page, what, f, arg) =>
  page.waitForFunction(f, arg, { timeout: TIMEOUT }).catch((err) => {
    throw new Error(`waiting for ${what}: ${err.message.split("\n")[0]}`);
  });

function expect(ok, what) {
  if (!ok) throw new Error(what);
}

/** Checks an outcome from `t.outcome`: rejected with `code` within half a second. */
function rejectedAtOnce(outcome, code, what) {
  expect(!outcome.hung, `${what}: the request hung`);
  expect(!outcome.ok && outcome.code === code, `${what}: expected ${code}, got ${JSON.stringify(outcome)}`);
  expect(outcome.ms <= 500, `${what}: it took ${outcome.ms} ms to reject`);
}

// ---- the test ---------------------------------------------------------------------------------

let alice, bob, browser;
try {
  const redisUrl = await startRedis();
  const [portA, portB] = [await freePort(), await freePort()];
  let nodeA = await startNode("a", portA, redisUrl, 20_000);
  await startNode("b", portB, redisUrl, 20_000);
  const [baseA, baseB] = [`http://127.0.0.1:${portA}/`, `http://127.0.0.1:${portB}/`];
  // The binary embeds parlor.js: a stale build would test another client than this checkout's.
  if (await (await fetch(`${baseA}parlor.js`)).text() !== readFileSync(new URL("../../web/parlor.js", import.meta.url), "utf8")) {
    throw new Error(`${binary} serves another parlor.js than web/parlor.js: rebuild it`);
  }
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  alice = await (await browser.newContext()).newPage();
  bob = await (await browser.newContext()).newPage();
  for (const [who, page, base] of [["alice", alice, baseA], ["bob", bob, baseB]]) {
    page.on("pageerror", (err) => console.error(`${who} page error: ${err.message}`));
    await page.goto(`${base}health`);
  }
  await setUp(alice, `ws://127.0.0.1:${portA}/ws`, jwt("alice"));
  await setUp(bob, `ws://127.0.0.1:${portB}/ws`, jwt("bob"));
  await alice.evaluate(() => t.join());
  await bob.evaluate(() => t.join());
  await alice.evaluate(() => t.parlor.subscribeLobby({}));
  await bob.evaluate(() => t.room.emit("move", { n: 0 }));
  await waitFor(alice, "the first event", () => t.events.length === 1);
  const aliceSession = await alice.evaluate(() => t.parlor.session);
  await waitFor(bob, "alice in the room", (s) => t.room.members.includes(s), aliceSession);

  // ---- 1. A restarts within the grace: Alice resumes ----------------------------------------
  const lobbiesBefore = await alice.evaluate(() => t.lobbies);
  await stopNode(nodeA);
  await waitFor(alice, "alice reconnecting", () => t.log.some((e) => e.type === "reconnecting" && e.code === 1001));
  rejectedAtOnce(await alice.evaluate(() => t.outcome("while down", t.room.emit("move", { n: "nobody" }))),
    "disconnected", "a request while A is down");
  await alice.evaluate(() => {
    t.queued = t.outcome("queued", t.room.emit("move", { n: "queued" }, { waitForReconnect: true, echo: true }), 30_000);
  });
  // Bob plays on, on B, while Alice's node is down: her session is an orphan, away.
  await waitFor(bob, "alice away", (s) => t.room.away.has(s), aliceSession);
  for (let n = 1; n <= 5; n++) await bob.evaluate((n) => t.room.emit("move", { n }), n);
  await bob.evaluate(() => t.room.set(["grid", "2,3"], "#1f77b4"));
  await sleep(500); // attempts fail while nothing listens on A's port
  nodeA = await startNode("a", portA, redisUrl, 2_000);
  await waitFor(alice, "the resume", () => t.log.some((e) => e.type === "resumed" || e.type === "reset"));
  const resumed = await alice.evaluate(() => t.log.find((e) => e.type === "resumed" || e.type === "reset"));
  expect(resumed.type === "resumed", `alice's page did not resume on the restarted node: ${JSON.stringify(resumed)}`);
  expect(JSON.stringify([resumed.recovered, resumed.snapshot, resumed.lost]) === `[["${ROOM}"],[],[]]`,
    `resumed: ${JSON.stringify(resumed)}`);
  expect(await alice.evaluate(() => t.parlor.session) === aliceSession, "alice kept her session");
  await waitFor(alice, "the missed frames", () => t.events.includes("queued"));
  await sleep(300); // anything delivered twice would arrive by now
  const seen = await alice.evaluate(() => t.events);
  expect(JSON.stringify(seen) === '[0,1,2,3,4,5,"queued"]', `alice's room saw ${JSON.stringify(seen)}`);
  const queued = await alice.evaluate(() => t.queued);
  expect(queued.ok, `the queued request: ${JSON.stringify(queued)}`);
  await waitFor(alice, "the state", () => t.room.state.grid?.["2,3"] === "#1f77b4");
  await waitFor(bob, "alice back", (s) => !t.room.away.has(s), aliceSession);
  const [aliceState, bobState] = await Promise.all([alice, bob].map((p) => p.evaluate(() => JSON.stringify([t.room.state, t.room.version]))));
  expect(aliceState === bobState, `states differ: ${aliceState} vs ${bobState}`);
  const bobSaw = await bob.evaluate((s) => t.presence.filter((p) => p.startsWith(s)), aliceSession);
  expect(JSON.stringify(bobSaw) === JSON.stringify([`${aliceSession} away`, `${aliceSession} back`]),
    `bob saw alice: ${JSON.stringify(bobSaw)}`);
  await waitFor(alice, "the lobby again", (n) => t.lobbies > n, lobbiesBefore);
  await waitFor(bob, "alice's echo", () => t.events.includes("queued"));
  console.log("within the grace: alice resumed on the restarted node with every missed frame");

  // ---- 2. A stays down past its grace: Alice starts afresh ----------------------------------
  await alice.evaluate(() => { t.log = []; });
  await stopNode(nodeA);
  await waitFor(alice, "alice reconnecting again", () => t.log.some((e) => e.type === "reconnecting" && e.code === 1001));
  await alice.evaluate(() => {
    // It waits for the whole outage, grace included.
    t.waiting = t.outcome("waiting", t.parlor.listRooms({}, undefined, { waitForReconnect: true }), 30_000);
  });
  await waitFor(bob, "alice gone (her grace over)", (s) => t.presence.includes(`${s} left timeout`), aliceSession);
  nodeA = await startNode("a", portA, redisUrl, 2_000);
  await waitFor(alice, "alice's reset", () => t.log.some((e) => e.type === "reset" || e.type === "resumed"));
  const reset = await alice.evaluate(() => t.log.find((e) => e.type === "reset" || e.type === "resumed"));
  expect(reset.type === "reset" && reset.previous === aliceSession && reset.session !== aliceSession,
    `alice's reset: ${JSON.stringify(reset)}`);
  expect(JSON.stringify(reset.lost) === `["${ROOM}"]` && reset.error === "resume_failed", `alice's reset: ${JSON.stringify(reset)}`);
  expect(await alice.evaluate(() => t.log.some((e) => e.type === "room-left" && e.reason === "lost") && t.parlor.rooms.size === 0),
    "alice's room heard it was lost");
  const waiting = await alice.evaluate(() => t.waiting);
  expect(waiting.ok, `alice's waiting request: ${JSON.stringify(waiting)}`);
  // The fresh session works: Alice joins again and hears Bob.
  await alice.evaluate(() => { t.events = []; return t.join(); });
  await bob.evaluate(() => t.room.emit("move", { n: "after the grace" }));
  await waitFor(alice, "an event after the grace", () => t.events.includes("after the grace"));
  console.log("past the grace: alice started afresh and was told the room was lost");

  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    const left = await page.evaluate(() => [...t.open]);
    expect(left.length === 0, `${who}'s requests still pending: ${left}`);
    const closes = await page.evaluate(() => t.log.filter((e) => e.type === "close"));
    expect(closes.length === 0, `${who} closed for good: ${JSON.stringify(closes)}`);
  }
  console.log("ok: a restarted cluster node's page resumed, then started afresh past the grace");
} catch (err) {
  console.error(`cluster reconnect test failed: ${err.message}`);
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    const log = await page?.evaluate(() => JSON.stringify([window.t?.log, window.t?.events, window.t?.presence])).catch(() => "?");
    console.error(`${who}'s log, events, presence: ${log}`);
    await page?.screenshot({ path: join(artifacts, `failed-cluster-${who}.png`) }).catch(() => {});
  }
  console.error(`servers' logs:\n${logs}`);
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => {});
  // The exit handler kills Redis and the nodes, whose pipes would keep this process alive.
  process.exit();
}
