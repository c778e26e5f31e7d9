// parlor.js with its Yjs provider (web/parlor-yjs.js) and an unchanged y-websocket client edit
// one document on a Parlor node, with 500 random edits each: both converge, and each shows the
// other's awareness. Run by tests/documents.rs:
//
//   node tests/browser/parlor-yjs.mjs <host:port> <document>
//
// Prints the converged text as JSON and exits 0; exits 1 (saying why) after 30 s otherwise.

import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { Parlor, ParlorYjsProvider } from "./parlor-node.mjs";

const [host, document] = process.argv.slice(2);
const EDITS = 500;

const parlorDoc = new Y.Doc();
const client = await Parlor.connect(`ws://${host}/ws`, { WebSocket });
let room;
try {
  room = await client.create({ room_type: "yjs" }, document);
} catch (err) {
  if (err.code !== "room_exists") throw err;
  room = await client.join(document);
}
const parlor = new ParlorYjsProvider(room, parlorDoc);
parlor.awareness.setLocalStateField("user", "parlor.js");
await new Promise((resolve) => (parlor.synced ? resolve() : parlor.on("sync", resolve)));

const yDoc = new Y.Doc();
const ws = new WebsocketProvider(`ws://${host}/yjs`, document, yDoc, { WebSocketPolyfill: WebSocket, disableBc: true });
ws.awareness.setLocalStateField("user", "y-websocket");
await new Promise((resolve) => ws.once("sync", resolve));

let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
for (let i = 0; i < EDITS; i++) {
  for (const text of [parlorDoc.getText("t"), yDoc.getText("t")]) {
    const len = text.length;
    if (len > 0 && random() < 0.25) text.delete(Math.floor(random() * len), 1);
    else text.insert(Math.floor(random() * (len + 1)), String.fromCharCode(97 + Math.floor(random() * 26)));
  }
  if (i % 25 === 0) await new Promise((r) => setTimeout(r, 1));
}
const sees = (awareness, who) => [...awareness.getStates().values()].some((s) => s.user === who);
const deadline = Date.now() + 30_000;
while (Date.now() < deadline) {
  const a = parlorDoc.getText("t").toString(), b = yDoc.getText("t").toString();
  if (a === b && sees(parlor.awareness, "y-websocket") && sees(ws.awareness, "parlor.js")) {
    console.log(JSON.stringify({ text: a }));
    parlor.destroy();
    ws.destroy();
    client.close();
    process.exit(0);
  }
  await new Promise((r) => setTimeout(r, 100));
}
console.error(`no convergence: ${parlorDoc.getText("t").length} vs ${yDoc.getText("t").length} chars; awareness ${sees(parlor.awareness, "y-websocket")} ${sees(ws.awareness, "parlor.js")}`);
process.exit(1);
