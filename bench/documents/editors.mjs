// Editors for bench/documents: DOCS documents x 10 editors, each appending a short stamped
// piece of text 5 times a second (its own Y.Text transaction, so one update each). On Parlor
// they are y-websocket providers on /yjs/{doc}; on Hocuspocus, its own provider: the same Yjs
// document work on each. y-websocket's BroadcastChannel (which would carry updates between
// editors of this one process without the server) is off. One editor per document measures latency: for every piece
// another editor wrote, how long from its stamp until it was in this editor's document
// (all editors share this process's clock). Prints one JSON line after SECONDS of measuring.
//
// With LEAN=1 only the measuring editor of each document is a provider; the nine others are
// lean writers that speak the same protocol (sync, then their own updates) but do not take in
// what the server sends them (their own Y.Doc only ever holds their own edits, so their
// updates are ordinary Yjs updates): the servers get the same updates to apply and relay,
// and this one process can send what it means to. Neither kind sends awareness.
//
//   node editors.mjs parlor ws://127.0.0.1:8080/yjs 100 30
//   node editors.mjs hocuspocus ws://127.0.0.1:1234 100 30
import WebSocket from "ws";
import * as Y from "yjs";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";
import { WebsocketProvider } from "y-websocket";
import { HocuspocusProvider } from "@hocuspocus/provider";

const [target, url, docsArg = "100", secondsArg = "30"] = process.argv.slice(2);
const LEAN = process.env.LEAN === "1";
const HOCUSPOCUS_VERSION = "4.8.0";
const DOCS = Number(docsArg), SECONDS = Number(secondsArg), EDITORS = 10, EVERY_MS = 200;
let measuring = false;
const latencies = [];
let sent = 0;

function connect(name) {
  const doc = new Y.Doc();
  const provider = target === "parlor"
    ? new WebsocketProvider(url, name, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
    : new HocuspocusProvider({ url, name, document: doc, WebSocketPolyfill: WebSocket });
  const synced = new Promise((resolve) => {
    if (target === "parlor") provider.once("sync", resolve);
    else provider.on("synced", resolve);
  });
  return { doc, provider, synced, text: doc.getText("t") };
}

// A writer that speaks the protocol without taking in what it hears: it answers the server's
// step 1 with its own state and sends each of its own updates. Hocuspocus frames every
// message with the document's name and wants an authentication message first.
function connectLean(name) {
  const doc = new Y.Doc();
  const hocuspocus = target === "hocuspocus";
  const ws = new WebSocket(hocuspocus ? url : `${url}/${name}`);
  ws.binaryType = "arraybuffer";
  const message = (write) => {
    const encoder = encoding.createEncoder();
    if (hocuspocus) encoding.writeVarString(encoder, name);
    write(encoder);
    return encoding.toUint8Array(encoder);
  };
  const sync = (sub, payload) => message((e) => {
    encoding.writeVarUint(e, 0);
    encoding.writeVarUint(e, sub);
    encoding.writeVarUint8Array(e, payload);
  });
  const step1 = () => sync(0, Y.encodeStateVector(doc));
  let resolve;
  const synced = new Promise((r) => { resolve = r; });
  ws.on("open", () => {
    if (hocuspocus) {
      ws.send(message((e) => {
        encoding.writeVarUint(e, 2); // auth
        encoding.writeVarUint(e, 0); // token
        encoding.writeVarString(e, "");
        encoding.writeVarString(e, HOCUSPOCUS_VERSION);
      }));
    } else {
      ws.send(step1());
    }
  });
  ws.on("message", (data) => {
    const decoder = decoding.createDecoder(new Uint8Array(data));
    if (hocuspocus) decoding.readVarString(decoder);
    const type = decoding.readVarUint(decoder);
    if (type === 2 && hocuspocus) {
      if (decoding.readVarUint(decoder) === 2) ws.send(step1()); // authenticated
      return;
    }
    if (type !== 0) return;
    const sub = decoding.readVarUint(decoder);
    if (sub === 0) ws.send(sync(1, Y.encodeStateAsUpdate(doc, decoding.readVarUint8Array(decoder))));
    else if (sub === 1) resolve();
  });
  doc.on("update", (update) => { if (ws.readyState === 1) ws.send(sync(2, update)); });
  return { doc, synced, text: doc.getText("t") };
}

const editors = [];
for (let d = 0; d < DOCS; d++) {
  for (let e = 0; e < EDITORS; e++) {
    const editor = LEAN && e > 0 ? connectLean(`doc-${d}`) : connect(`doc-${d}`);
    editors.push({ ...editor, d, e });
  }
  if (d % 10 === 9) await new Promise((r) => setTimeout(r, 200));
}
await Promise.all(editors.map((e) => e.synced));
// The measuring editor of each document: editor 0.
for (const ed of editors.filter((e) => e.e === 0)) {
  ed.text.observe((event, txn) => {
    if (txn.local || !measuring) return;
    const now = performance.now();
    for (const op of event.delta) {
      if (typeof op.insert !== "string") continue;
      for (const stamp of op.insert.split("|").slice(1)) {
        const at = Number.parseFloat(stamp);
        if (Number.isFinite(at)) latencies.push(now - at);
      }
    }
  });
}
editors.forEach((ed, i) => setTimeout(() => setInterval(() => {
  ed.text.insert(ed.text.length, `|${performance.now().toFixed(2)}`);
  if (measuring) sent += 1;
}, EVERY_MS), (i * 13) % EVERY_MS));
await new Promise((r) => setTimeout(r, 5000));
console.error(`${target}: ${editors.length} editors synced; measuring ${SECONDS} s`);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
measuring = true;
await new Promise((r) => setTimeout(r, SECONDS * 1000));
measuring = false;
const secs = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
latencies.sort((a, b) => a - b);
const q = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null;
console.log(JSON.stringify({
  target, docs: DOCS, editors: editors.length, lean: LEAN,
  updates_per_second: sent / secs,
  measured: latencies.length,
  expected_measured: Math.round((sent / secs) * secs * (EDITORS - 1) / EDITORS),
  p50_ms: q(0.5), p99_ms: q(0.99),
  editors_cpu_percent: ((cpu.user + cpu.system) / 1e6 / secs) * 100,
}));
process.exit(0);
