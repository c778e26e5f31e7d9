// parlor-yjs.js: binds a Parlor document room (room type "yjs") to a Y.Doc and its awareness,
// so that editor bindings made for Yjs (y-prosemirror, y-codemirror, y-quill, ...) work over a
// Parlor connection as they do over y-websocket. It speaks y-sync in `emit`s of event "y"
// whose data is one y-websocket message (PROTOCOL.md, section 4), and starts the sync again
// whenever the room is caught up by a snapshot (`reset`) or the session resumes.
//
//   import { Parlor } from "./parlor.js";
//   import { ParlorYjsProvider } from "./parlor-yjs.js";
//   const client = await Parlor.connect("ws://127.0.0.1:8080/ws");
//   const room = await client.create({ room_type: "yjs" }, "notes")   // or client.join("notes")
//   const provider = new ParlorYjsProvider(room, ydoc);                 // provider.awareness
//
// Needs the npm packages `yjs`, `y-protocols` and `lib0` (which Yjs itself uses): bundle it
// with them, as editor bindings are.

import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";
import * as syncProtocol from "y-protocols/sync";
import * as awarenessProtocol from "y-protocols/awareness";

const MESSAGE_SYNC = 0;
const MESSAGE_AWARENESS = 1;
const MESSAGE_QUERY_AWARENESS = 3;

export class ParlorYjsProvider {
  /**
   * @param room a parlor.js Room of type "yjs" this client is in
   * @param doc the Y.Doc to keep in sync with it
   * @param options `awareness`: an existing Awareness (default: a new one for `doc`)
   */
  constructor(room, doc, { awareness = new awarenessProtocol.Awareness(doc) } = {}) {
    this.room = room;
    this.doc = doc;
    this.awareness = awareness;
    /** True once the room's step 2 has arrived (the document is whole). */
    this.synced = false;
    // Set once the room refuses an edit `read_only` (the token's read-only claim): the
    // provider still takes the room's document and awareness, and sends no edits.
    this.readOnly = false;
    this._listeners = new Set();
    this._off = [];
    // The others' updates and awareness come as the room's events; the room's answers to this
    // client (to its step 1: the room's step 2, step 1 and awareness) as its requests' data.
    const take = (frame) => { if (frame.event === "y") this._receive(frame.data); };
    this._off.push(room.on("event", take));
    this._off.push(room.on("reset", () => this._start()));
    this._off.push(room.client.on("resumed", () => this._start()));
    this._onUpdate = (update, origin) => {
      if (origin === this || this.readOnly) return;
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeUpdate(encoder, update);
      this._send(encoding.toUint8Array(encoder));
    };
    doc.on("update", this._onUpdate);
    this._onAwareness = ({ added, updated, removed }, origin) => {
      if (origin === this) return;
      const changed = added.concat(updated, removed);
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_AWARENESS);
      encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, changed));
      this._send(encoding.toUint8Array(encoder));
    };
    awareness.on("update", this._onAwareness);
    this._start();
  }

  /** Calls `listener(synced)` when the document becomes whole (`"sync"`, as y-websocket). */
  on(event, listener) {
    if (event === "sync") this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Stops syncing; this client's awareness is cleared for the others. */
  destroy() {
    clearTimeout(this._resync);
    this._resync = "destroyed";
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], "destroy");
    this.doc.off("update", this._onUpdate);
    this.awareness.off("update", this._onAwareness);
    for (const off of this._off) off();
  }

  /** Sends the document's state vector (step 1) and this client's awareness. */
  _start() {
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_SYNC);
    syncProtocol.writeSyncStep1(encoder, this.doc);
    this._send(encoding.toUint8Array(encoder));
    if (this.awareness.getLocalState() !== null) {
      const aw = encoding.createEncoder();
      encoding.writeVarUint(aw, MESSAGE_AWARENESS);
      encoding.writeVarUint8Array(aw, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]));
      this._send(encoding.toUint8Array(aw));
    }
  }

  _send(bytes) {
    this.room.emit("y", bytes).then(
      (answer) => { if (Array.isArray(answer)) for (const message of answer) this._receive(message); },
      (error) => {
        // A reader's edits are dropped (its token's read-only claim): it stays in sync with
        // the room and stops offering them.
        if (error && error.reason === "read_only") { this.readOnly = true; return; }
        // Not taken (over the rate limit, the connection lost...): a sync a moment later
        // sends the room whatever it lacks, so nothing is lost.
        this._resyncSoon();
      },
    );
  }

  _resyncSoon() {
    if (this._resync) return;
    this._resync = setTimeout(() => {
      this._resync = null;
      if (this.room.client.state === "open") this._start();
      else this._resyncSoon();
    }, 500);
  }

  _receive(data) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const decoder = decoding.createDecoder(bytes);
    const type = decoding.readVarUint(decoder);
    if (type === MESSAGE_SYNC) {
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      const kind = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this);
      // A reader answers no step 1: the room would drop its step 2.
      if (encoding.length(encoder) > 1 && !this.readOnly) this._send(encoding.toUint8Array(encoder));
      if (kind === syncProtocol.messageYjsSyncStep2 && !this.synced) {
        this.synced = true;
        for (const listener of this._listeners) listener(true);
      }
    } else if (type === MESSAGE_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this);
    } else if (type === MESSAGE_QUERY_AWARENESS) {
      // Not sent by the server; nothing to do.
    }
  }
}
