// The collaborative editor page's code (web/editor.html), bundled by build.mjs into
// web/editor.bundle.js: CodeMirror 6 bound to a Yjs document (y-codemirror.next, with remote
// cursors) that parlor-yjs.js keeps in sync with a Parlor document room.

import { EditorView, basicSetup } from "codemirror";
import * as Y from "yjs";
import { yCollab } from "y-codemirror.next";
import { Parlor } from "../parlor.js";
import { ParlorYjsProvider } from "../parlor-yjs.js";

const COLORS = ["#e4572e", "#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#17becf", "#bcbd22"];

/** Opens document `name` as `user` in the element `parent`; `say` reports the status. */
export async function open({ name, user, parent, say }) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const client = await Parlor.connect(url);
  let room;
  try {
    room = await client.create({ room_type: "yjs" }, name);
  } catch (err) {
    if (err.code !== "room_exists") throw err;
    room = await client.join(name);
  }
  const doc = new Y.Doc();
  const provider = new ParlorYjsProvider(room, doc);
  const color = COLORS[Math.abs(hash(user)) % COLORS.length];
  provider.awareness.setLocalStateField("user", { name: user, color, colorLight: `${color}33` });
  const text = doc.getText("text");
  const view = new EditorView({
    parent,
    extensions: [basicSetup, EditorView.lineWrapping, yCollab(text, provider.awareness)],
  });
  const people = () => [...provider.awareness.getStates().values()].map((s) => s.user?.name).filter(Boolean);
  const report = () => say(`“${name}”: ${provider.synced ? "in sync" : "syncing…"} · here: ${people().join(", ")}`);
  provider.on("sync", report);
  provider.awareness.on("change", report);
  client.on("reconnecting", () => say("connection lost, reconnecting…"));
  client.on("resumed", report);
  report();
  return { client, room, doc, provider, view, text, people };
}

function hash(s) {
  let h = 0;
  for (const c of s) h = (h * 31 + c.charCodeAt(0)) | 0;
  return h;
}
