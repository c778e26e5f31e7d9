// The example arena of examples/games/arena.rs, rule for rule, as a Colyseus 0.18 room: 20 ticks
// a second from checked inputs, walls, collisions, a coin; each tick the whole world goes to
// the room (`broadcast`, MessagePack, as Parlor's arena sends its `world` event). For
// bench/games, which runs the same bots against both.
//
//   PORT=2567 LATENESS_OUT=lateness.json node colyseus-arena.mjs
//
// Tick lateness is measured as Parlor measures it: how long after its due time each tick
// starts, the due time moving on by one period per tick (and starting over from now when a
// tick comes a whole period late), counted in the same buckets as Parlor's
// parlor_logic_tick_lateness_seconds (50 µs doubling to 410 ms). The counts so far are written
// to LATENESS_OUT every half second.

import { Room, Server } from "@colyseus/core";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { writeFileSync } from "node:fs";

const SIZE = 100, RADIUS = 2, SPEED = 1, TICK_MS = 50, MAX_PLAYERS = 8;
const BOUNDS = Array.from({ length: 14 }, (_, i) => 0.00005 * 2 ** i);
const histogram = () => ({ bounds: BOUNDS, counts: new Array(BOUNDS.length + 1).fill(0), sum: 0, ticks: 0 });
// Against the fixed schedule (Parlor's definition), and against the timer's own promise: how
// much longer than 50 ms after the previous tick this one came (Node's setInterval counts
// each period from when the last callback ran, so its ticks drift off a fixed schedule).
const lateness = { schedule: histogram(), interval: histogram() };

function observe(h, seconds) {
  let i = BOUNDS.findIndex((b) => seconds <= b);
  if (i < 0) i = BOUNDS.length;
  h.counts[i] += 1;
  h.sum += seconds;
  h.ticks += 1;
}

function direction(data) {
  const { dx, dy } = data ?? {};
  const ok = (v) => typeof v === "number" && Number.isFinite(v) && v >= -1 && v <= 1;
  return ok(dx) && ok(dy) ? [dx, dy] : null;
}

class Arena extends Room {
  maxClients = MAX_PLAYERS;

  onCreate(options) {
    // Seats as Parlor's `max_members`: the bots ask for four.
    this.maxClients = Math.min(MAX_PLAYERS, Number(options?.maxClients ?? MAX_PLAYERS));
    this.seed = BigInt(options?.seed ?? 7);
    this.players = new Map();
    this.inputs = [];
    this.tick = 0;
    this.coin = this.randomPoint();
    this.nextDue = performance.now() + TICK_MS;
    this.onMessage("input", (client, data) => {
      if (!direction(data)) {
        client.error(4000, "an input is {dx, dy}, each from -1 to 1");
        return;
      }
      this.inputs.push([client.sessionId, data]);
    });
    this.setSimulationInterval(() => this.onTick(), TICK_MS);
  }

  // The same small LCG as the Rust arena.
  randomPoint() {
    const next = () => {
      this.seed = (this.seed * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
      return Number(this.seed >> 33n) / 2 ** 31;
    };
    const span = SIZE - 2 * RADIUS;
    return [RADIUS + next() * span, RADIUS + next() * span];
  }

  onJoin(client) {
    const [x, y] = this.randomPoint();
    this.players.set(client.sessionId, { x, y, dir: [0, 0], score: 0 });
  }

  onLeave(client) {
    this.players.delete(client.sessionId);
  }

  onTick() {
    const now = performance.now();
    observe(lateness.schedule, Math.max(0, now - this.nextDue) / 1000);
    if (this.lastTick !== undefined) observe(lateness.interval, Math.max(0, now - this.lastTick - TICK_MS) / 1000);
    this.lastTick = now;
    this.nextDue += TICK_MS;
    if (this.nextDue <= now) this.nextDue = now + TICK_MS;
    this.step(this.inputs);
    this.inputs = [];
    this.broadcast("world", this.world());
  }

  step(inputs) {
    for (const [from, data] of inputs) {
      const body = this.players.get(from);
      const dir = direction(data);
      if (body && dir) body.dir = dir;
    }
    const clamp = (v) => Math.min(SIZE - RADIUS, Math.max(RADIUS, v));
    for (const b of this.players.values()) {
      b.x = clamp(b.x + b.dir[0] * SPEED);
      b.y = clamp(b.y + b.dir[1] * SPEED);
    }
    const ids = [...this.players.keys()].sort();
    for (let pass = 0; pass < 4; pass++) {
      for (let i = 0; i < ids.length; i++) {
        for (let j = i + 1; j < ids.length; j++) this.separate(ids[i], ids[j]);
      }
    }
    const [cx, cy] = this.coin;
    for (const b of this.players.values()) {
      if (Math.hypot(b.x - cx, b.y - cy) <= RADIUS + 1) {
        b.score += 1;
        this.coin = this.randomPoint();
        break;
      }
    }
    this.tick += 1;
  }

  separate(a, b) {
    const pa = this.players.get(a), pb = this.players.get(b);
    const gap = () => {
      const dx = pb.x - pa.x, dy = pb.y - pa.y;
      return [Math.hypot(dx, dy), dx, dy];
    };
    let [distance, dx, dy] = gap();
    if (distance >= 2 * RADIUS) return;
    const [nx, ny] = distance > 1e-9 ? [dx / distance, dy / distance] : [1, 0];
    const clamp = (v) => Math.min(SIZE - RADIUS, Math.max(RADIUS, v));
    const shove = (body, by) => { body.x = clamp(body.x + nx * by); body.y = clamp(body.y + ny * by); };
    const half = (2 * RADIUS - distance) / 2;
    shove(pa, -half);
    shove(pb, half);
    [distance] = gap();
    if (distance < 2 * RADIUS) {
      shove(pb, 2 * RADIUS - distance);
      [distance] = gap();
      if (distance < 2 * RADIUS) shove(pa, -(2 * RADIUS - distance));
    }
  }

  world() {
    return {
      tick: this.tick,
      players: [...this.players].map(([id, b]) => [id, b.x, b.y, b.score]),
      coin: this.coin,
    };
  }
}

const server = new Server({ transport: new WebSocketTransport(), greet: false });
server.define("arena", Arena);
const port = Number(process.env.PORT ?? 2567);
await server.listen(port, "127.0.0.1");
console.log(`colyseus arena on ws://127.0.0.1:${port}`);
const out = process.env.LATENESS_OUT;
// The counts so far, every half second (Colyseus takes SIGUSR2 for its own shutdown), and on
// SIGTERM before exiting.
if (out) setInterval(() => writeFileSync(out, JSON.stringify(lateness)), 500);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    if (out) writeFileSync(out, JSON.stringify(lateness));
    process.exit(0);
  });
}
