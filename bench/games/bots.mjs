// Bots for bench/games: ROOMS arenas of four bots each, on Parlor or on Colyseus, doing the
// same work on each: a bot joins a four-seat arena (join_or_create / joinOrCreate), decodes
// every message it gets (MessagePack, once) and counts the `world`s (20 a second), and picks a
// new direction five times a second (as a player on a keyboard would). On Parlor the bot is
// a bare `ws` socket with parlor.js's codec (parlor.js's own room bookkeeping would cost the
// bots more than the servers); on Colyseus it is @colyseus/sdk, which is that bare already.
// Prints one JSON line: bots seated, worlds heard and inputs sent per second over the
// measured window, the bots' own CPU.
//
//   node bots.mjs parlor ws://127.0.0.1:8081/ws 1000 30
//   node bots.mjs colyseus ws://127.0.0.1:2567 1000 30

import WebSocket from "ws";
import { Client } from "@colyseus/sdk";
import { decode, encode } from "../../web/parlor.js";

const [target, url, roomsArg = "1000", secondsArg = "30", warmupArg = "5"] = process.argv.slice(2);
const ROOMS = Number(roomsArg), SECONDS = Number(secondsArg), WARMUP = Number(warmupArg);
const BOTS = ROOMS * 4;
const CONNECT_PER_SECOND = 400;
const INPUT_EVERY_MS = 200;

let worlds = 0, inputs = 0, failures = 0;
let seed = 12345;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const randomInput = () => ({ dx: Math.round(random() * 2 - 1), dy: Math.round(random() * 2 - 1) });

function parlorBot() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "nodebuffer";
    let room = null;
    // A bot not seated within 20 s (its socket closed, its answer lost) counts as failed.
    const giveUp = setTimeout(() => { ws.terminate(); reject(new Error("not seated in 20 s")); }, 20_000);
    ws.on("error", reject);
    ws.on("close", () => reject(new Error("closed before it was seated")));
    ws.on("message", (bytes) => {
      const frame = decode(bytes);
      if (room !== null) {
        if (frame.type === "event" && frame.event === "world") worlds += 1;
        else if (frame.type === "error") failures += 1;
        return;
      }
      if (frame.type === "welcome") {
        ws.send(encode({
          type: "join_or_create", ref: 1,
          filter: { room_type: "arena" }, options: { room_type: "arena", max_members: 4 },
        }));
      } else if (frame.type === "joined") {
        clearTimeout(giveUp);
        room = frame.room;
        // No `ref`: an input is not answered (a refusal would still come as an error).
        resolve(() => { ws.send(encode({ type: "emit", room, event: "input", data: randomInput() })); inputs += 1; });
      } else if (frame.type === "error") {
        reject(new Error(frame.message));
      }
    });
  });
}

async function colyseusBot() {
  const client = new Client(url);
  const room = await Promise.race([
    client.joinOrCreate("arena", { maxClients: 4 }),
    new Promise((_, reject) => setTimeout(() => reject(new Error("not seated in 20 s")), 20_000)),
  ]);
  room.onMessage("world", () => { worlds += 1; });
  return () => { room.send("input", randomInput()); inputs += 1; };
}

const makeBot = target === "parlor" ? parlorBot : colyseusBot;
const steer = [];
// Seat the bots at a steady pace, in groups of four, so that rooms fill one by one.
for (let i = 0; i < BOTS; i += 4) {
  const group = [];
  for (let j = 0; j < 4 && i + j < BOTS; j++) group.push(makeBot().then((s) => steer.push(s), () => { failures += 1; }));
  await Promise.all(group);
  if (((i / 4) + 1) % (CONNECT_PER_SECOND / 4) === 0) await new Promise((r) => setTimeout(r, 1000));
}
// Each bot steers five times a second, at its own phase.
steer.forEach((s, i) => setTimeout(() => setInterval(s, INPUT_EVERY_MS), (i * 7) % INPUT_EVERY_MS));
await new Promise((r) => setTimeout(r, WARMUP * 1000));
const start = { worlds, inputs, cpu: process.cpuUsage(), at: performance.now() };
console.error(`${target}: ${steer.length} bots seated; measuring ${SECONDS} s`);
process.send?.("measuring");
await new Promise((r) => setTimeout(r, SECONDS * 1000));
const secs = (performance.now() - start.at) / 1000;
const cpu = process.cpuUsage(start.cpu);
console.log(JSON.stringify({
  target,
  bots: steer.length,
  failures,
  worlds_per_second: (worlds - start.worlds) / secs,
  expected_worlds_per_second: steer.length * 20,
  inputs_per_second: (inputs - start.inputs) / secs,
  bots_cpu_percent: ((cpu.user + cpu.system) / 1e6 / secs) * 100,
}));
process.exit(0);
