// Two editors with the real `yjs` and `y-websocket` packages, unchanged, on a Parlor node's
// y-websocket endpoint (`/yjs/{document}`), and a third with parlor.js and its Yjs provider
// (web/parlor-yjs.js) on Parlor's own protocol: each makes EDITS random edits to one Y.Text
// while the others do (and whoever else edits: the Rust client, in the test). The
// y-websocket editors' BroadcastChannel is off, so that everything they share goes through
// the server. Then, told "check" on stdin, every 200 ms that the three agree it prints one
// JSON line, the text and whether each sees another's awareness, until told "done". Run by
// tests/documents.rs:
//
//   node tests/browser/yjs.mjs <ws-base-url> <document> <edits>
//
// Exits 0 on "done" (or stdin's end).

import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { createInterface } from "node:readline";
import { Parlor, ParlorYjsProvider } from "./parlor-node.mjs";

const [base, document, editsArg = "1000"] = process.argv.slice(2);
const EDITS = Number(editsArg);

function editor(name, seed) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`${base}/yjs`, document, doc, { WebSocketPolyfill: WebSocket, disableBc: true });
  provider.awareness.setLocalStateField("user", name);
  let state = seed;
  const random = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return { name, doc, provider, text: doc.getText("t"), random };
}

async function parlorEditor(name, seed) {
  const doc = new Y.Doc();
  const client = await Parlor.connect(`${base}/ws`, { WebSocket });
  const room = await client.join(document);
  const provider = new ParlorYjsProvider(room, doc);
  provider.awareness.setLocalStateField("user", name);
  let state = seed;
  const random = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return { name, doc, provider, client, text: doc.getText("t"), random };
}

const synced = (e) => new Promise((resolve) => {
  if (e.provider.synced) resolve();
  else e.provider.on("sync", (s) => s && resolve());
});

const editors = [editor("alice", 1), editor("bob", 2), await parlorEditor("carol", 3)];
await Promise.all(editors.map(synced));
for (let i = 0; i < EDITS; i++) {
  for (const e of editors) {
    const len = e.text.length;
    if (len > 0 && e.random() < 0.25) {
      e.text.delete(Math.floor(e.random() * len), 1);
    } else {
      const at = Math.floor(e.random() * (len + 1));
      e.text.insert(at, String.fromCharCode(97 + Math.floor(e.random() * 26)));
    }
  }
  if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1));
}
const seesOther = (e) => [...e.provider.awareness.getStates().values()].some((s) => s.user && s.user !== e.name);
const input = createInterface({ input: process.stdin });
let checking = false;
input.on("line", (line) => {
  if (line === "check") checking = true;
  if (line === "done") finish();
});
input.on("close", finish);
function finish() {
  for (const e of editors) {
    e.provider.destroy();
    e.client?.close();
  }
  process.exit(0);
}
setInterval(() => {
  const [a, b, c] = editors;
  const text = a.text.toString();
  if (checking && text === b.text.toString() && text === c.text.toString()) {
    console.log(JSON.stringify({ text: a.text.toString(), awareness: editors.map(seesOther) }));
  }
}, 200);
