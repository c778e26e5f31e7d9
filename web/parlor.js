// parlor.js: a browser client for Parlor, served by the server at /parlor.js.
//
//   import { Parlor } from "/parlor.js";
//   const parlor = await Parlor.connect("ws://localhost:8080/ws");
//   const room = await parlor.joinOrCreate({ mode: "duel" }, { max_members: 2 });
//   room.on("event", (e) => console.log(e.from, e.event, e.data));
//   await room.emit("move", { x: 1 });
//   await room.set(["score", parlor.session], 10);   // shared state; room.state mirrors it
//
// It speaks protocol v1 (protocol/PROTOCOL.md): binary MessagePack frames over one WebSocket.
// Requests return promises settled by the server's answer to their `ref`. The MessagePack codec
// is below: small, dependency-free, and only as general as Parlor's frames need.

// ---------------------------------------------------------------------------------------------
// MessagePack

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** The MessagePack extension type of timestamps, which `Date` values encode as. */
const TIMESTAMP = -1;
/** Deeper than this, a value is taken for a cycle (the server allows far less anyway). */
const MAX_ENCODE_DEPTH = 512;

/** An extension value (MessagePack ext type), kept as its type number and raw bytes. */
export class Ext {
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
}

/** A plain object (of this realm or another): an object literal or `Object.create(null)`. */
function isPlainObject(v) {
  if (v === null || typeof v !== "object") return false;
  const proto = Object.getPrototypeOf(v);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** Sets `obj[key]` as an own property, even for the key `__proto__`. */
function putOwn(obj, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v) { this.reserve(1); this.buf[this.len++] = v; }
  u16(v) { this.reserve(2); this.view.setUint16(this.len, v); this.len += 2; }
  u32(v) { this.reserve(4); this.view.setUint32(this.len, v); this.len += 4; }
  bytes(b) { this.reserve(b.length); this.buf.set(b, this.len); this.len += b.length; }
  result() { return this.buf.slice(0, this.len); }
}

function encodeValue(w, v, depth) {
  if (v === null || v === undefined) return w.u8(0xc0);
  if (v === false) return w.u8(0xc2);
  if (v === true) return w.u8(0xc3);
  if (typeof v === "number") return encodeNumber(w, v);
  if (typeof v === "bigint") return encodeBigInt(w, v);
  if (typeof v === "string") return encodeString(w, v);
  if (typeof v !== "object") throw new TypeError(`cannot encode a ${typeof v} as MessagePack`);
  if (depth > MAX_ENCODE_DEPTH) throw new TypeError("cannot encode as MessagePack: nested too deep (a cycle?)");
  if (v instanceof Uint8Array) return encodeBinary(w, v);
  if (v instanceof ArrayBuffer) return encodeBinary(w, new Uint8Array(v));
  if (v instanceof Ext) return encodeExt(w, v.type, v.data);
  if (v instanceof Date) return encodeDate(w, v);
  if (Array.isArray(v)) {
    header(w, v.length, 0x90, 15, 0xdc, 0xdd);
    for (const item of v) encodeValue(w, item, depth + 1);
    return;
  }
  if (v instanceof Map) {
    header(w, v.size, 0x80, 15, 0xde, 0xdf);
    for (const [k, item] of v) { encodeValue(w, k, depth + 1); encodeValue(w, item, depth + 1); }
    return;
  }
  if (isPlainObject(v)) {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    header(w, keys.length, 0x80, 15, 0xde, 0xdf);
    for (const k of keys) { encodeString(w, k); encodeValue(w, v[k], depth + 1); }
    return;
  }
  // Anything else (a Set, a class instance, a RegExp, another typed array...) would lose what
  // it holds as a map of its own keys, usually `{}`: refuse it rather than send that.
  const kind = v instanceof Set ? "a Set (send [...set] instead)" : `a ${v.constructor?.name ?? "non-plain object"}`;
  throw new TypeError(`cannot encode ${kind} as MessagePack: send plain objects, arrays, Maps, Uint8Arrays or Dates`);
}

function header(w, n, fix, fixMax, m16, m32) {
  if (n <= fixMax) w.u8(fix | n);
  else if (n <= 0xffff) { w.u8(m16); w.u16(n); }
  else { w.u8(m32); w.u32(n); }
}

function encodeNumber(w, v) {
  if (!Number.isSafeInteger(v)) {
    w.u8(0xcb); w.reserve(8); w.view.setFloat64(w.len, v); w.len += 8;
    return;
  }
  if (v >= 0) {
    if (v < 0x80) w.u8(v);
    else if (v < 0x100) { w.u8(0xcc); w.u8(v); }
    else if (v < 0x10000) { w.u8(0xcd); w.u16(v); }
    else if (v < 0x100000000) { w.u8(0xce); w.u32(v); }
    else { w.u8(0xcf); w.reserve(8); w.view.setBigUint64(w.len, BigInt(v)); w.len += 8; }
  } else {
    if (v >= -32) w.u8(v & 0xff);
    else if (v >= -0x80) { w.u8(0xd0); w.u8(v & 0xff); }
    else if (v >= -0x8000) { w.u8(0xd1); w.reserve(2); w.view.setInt16(w.len, v); w.len += 2; }
    else if (v >= -0x80000000) { w.u8(0xd2); w.reserve(4); w.view.setInt32(w.len, v); w.len += 4; }
    else { w.u8(0xd3); w.reserve(8); w.view.setBigInt64(w.len, BigInt(v)); w.len += 8; }
  }
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

/** BigInts take the smallest form that holds them, like numbers; beyond 64 bits they throw. */
function encodeBigInt(w, v) {
  if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return encodeNumber(w, Number(v));
  }
  if (v > U64_MAX || v < I64_MIN) throw new RangeError(`cannot encode ${v} as MessagePack: it does not fit 64 bits`);
  w.reserve(9);
  if (v >= 0n) { w.u8(0xcf); w.view.setBigUint64(w.len, v); }
  else { w.u8(0xd3); w.view.setBigInt64(w.len, v); }
  w.len += 8;
}

function encodeString(w, s) {
  const b = textEncoder.encode(s);
  if (b.length <= 31) w.u8(0xa0 | b.length);
  else if (b.length <= 0xff) { w.u8(0xd9); w.u8(b.length); }
  else if (b.length <= 0xffff) { w.u8(0xda); w.u16(b.length); }
  else { w.u8(0xdb); w.u32(b.length); }
  w.bytes(b);
}

function encodeBinary(w, b) {
  if (b.length <= 0xff) { w.u8(0xc4); w.u8(b.length); }
  else if (b.length <= 0xffff) { w.u8(0xc5); w.u16(b.length); }
  else { w.u8(0xc6); w.u32(b.length); }
  w.bytes(b);
}

function encodeExt(w, type, data) {
  const n = data.length;
  const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n];
  if (fixed) w.u8(fixed);
  else if (n <= 0xff) { w.u8(0xc7); w.u8(n); }
  else if (n <= 0xffff) { w.u8(0xc8); w.u16(n); }
  else { w.u8(0xc9); w.u32(n); }
  w.u8(type & 0xff);
  w.bytes(data);
}

/**
 * A Date as the MessagePack timestamp extension (type -1), in its smallest form: 32 bits of
 * seconds, 64 bits (30 of nanoseconds, 34 of seconds), or 96 bits (nanoseconds, then signed
 * 64-bit seconds) for dates before 1970 or after 2514.
 */
function encodeDate(w, d) {
  const ms = d.getTime();
  if (Number.isNaN(ms)) throw new TypeError("cannot encode an invalid Date as MessagePack");
  const sec = Math.floor(ms / 1000);
  const nsec = (ms - sec * 1000) * 1_000_000;
  const body = new DataView(new ArrayBuffer(sec >= 0 && sec < 2 ** 34 ? (nsec === 0 && sec < 2 ** 32 ? 4 : 8) : 12));
  if (body.byteLength === 4) {
    body.setUint32(0, sec);
  } else if (body.byteLength === 8) {
    body.setUint32(0, nsec * 4 + Math.floor(sec / 2 ** 32));
    body.setUint32(4, sec >>> 0);
  } else {
    body.setUint32(0, nsec);
    body.setBigInt64(4, BigInt(sec));
  }
  encodeExt(w, TIMESTAMP, new Uint8Array(body.buffer));
}

/** Encodes a JavaScript value as MessagePack (the table at the top says what becomes what). */
export function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 0);
  return w.result();
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.bytes.length) throw new RangeError("truncated MessagePack");
  }
  u8() { this.need(1); return this.bytes[this.pos++]; }
  take(n) { this.need(n); const b = this.bytes.subarray(this.pos, this.pos + n); this.pos += n; return b; }
  num(getter, n) { this.need(n); const v = this.view[getter](this.pos); this.pos += n; return v; }
}

function decodeValue(r) {
  const b = r.u8();
  if (b <= 0x7f) return b;
  if (b >= 0xe0) return b - 0x100;
  if ((b & 0xf0) === 0x80) return decodeMap(r, b & 0x0f);
  if ((b & 0xf0) === 0x90) return decodeArray(r, b & 0x0f);
  if ((b & 0xe0) === 0xa0) return decodeString(r, b & 0x1f);
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.take(r.u8()).slice();
    case 0xc5: return r.take(r.num("getUint16", 2)).slice();
    case 0xc6: return r.take(r.num("getUint32", 4)).slice();
    case 0xc7: return decodeExt(r, r.u8());
    case 0xc8: return decodeExt(r, r.num("getUint16", 2));
    case 0xc9: return decodeExt(r, r.num("getUint32", 4));
    case 0xca: return r.num("getFloat32", 4);
    case 0xcb: return r.num("getFloat64", 8);
    case 0xcc: return r.u8();
    case 0xcd: return r.num("getUint16", 2);
    case 0xce: return r.num("getUint32", 4);
    case 0xcf: return safe(r.num("getBigUint64", 8));
    case 0xd0: return r.num("getInt8", 1);
    case 0xd1: return r.num("getInt16", 2);
    case 0xd2: return r.num("getInt32", 4);
    case 0xd3: return safe(r.num("getBigInt64", 8));
    case 0xd4: return decodeExt(r, 1);
    case 0xd5: return decodeExt(r, 2);
    case 0xd6: return decodeExt(r, 4);
    case 0xd7: return decodeExt(r, 8);
    case 0xd8: return decodeExt(r, 16);
    case 0xd9: return decodeString(r, r.u8());
    case 0xda: return decodeString(r, r.num("getUint16", 2));
    case 0xdb: return decodeString(r, r.num("getUint32", 4));
    case 0xdc: return decodeArray(r, r.num("getUint16", 2));
    case 0xdd: return decodeArray(r, r.num("getUint32", 4));
    case 0xde: return decodeMap(r, r.num("getUint16", 2));
    case 0xdf: return decodeMap(r, r.num("getUint32", 4));
    default: throw new RangeError(`invalid MessagePack byte 0x${b.toString(16)}`);
  }
}

/** 64-bit integers become numbers when exact, BigInts otherwise. */
function safe(big) {
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : big;
}

function decodeString(r, n) { return textDecoder.decode(r.take(n)); }

function decodeExt(r, n) {
  const type = r.num("getInt8", 1);
  const data = r.take(n).slice();
  if (type === TIMESTAMP && (n === 4 || n === 8 || n === 12)) return decodeTimestamp(data);
  return new Ext(type, data);
}

/** A timestamp extension as a Date (to the millisecond: a Date holds no finer time). */
function decodeTimestamp(data) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let sec, nsec;
  if (data.length === 4) {
    sec = view.getUint32(0);
    nsec = 0;
  } else if (data.length === 8) {
    const high = view.getUint32(0);
    nsec = high >>> 2;
    sec = (high & 3) * 2 ** 32 + view.getUint32(4);
  } else {
    nsec = view.getUint32(0);
    sec = Number(view.getBigInt64(4));
  }
  return new Date(sec * 1000 + Math.floor(nsec / 1_000_000));
}

function decodeArray(r, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = decodeValue(r);
  return out;
}

function decodeMap(r, n) {
  // Maps with string keys (every map in Parlor's frames) become plain objects; others Maps.
  const entries = [];
  let allStrings = true;
  for (let i = 0; i < n; i++) {
    const k = decodeValue(r);
    if (typeof k !== "string") allStrings = false;
    entries.push([k, decodeValue(r)]);
  }
  if (!allStrings) return new Map(entries);
  const obj = {};
  for (const [k, v] of entries) putOwn(obj, k, v);
  return obj;
}

/** Decodes exactly one MessagePack value from `bytes`. */
export function decode(bytes) {
  // A view of the same bytes as a plain Uint8Array: a subclass (node's Buffer) slices differently.
  const r = new Reader(ArrayBuffer.isView(bytes)
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : new Uint8Array(bytes));
  const value = decodeValue(r);
  if (r.pos !== r.bytes.length) throw new RangeError("bytes after the MessagePack value");
  return value;
}

// ---------------------------------------------------------------------------------------------
// Shared state

/** Applies `set`/`delete` ops to a state object in place, as the server does. */
export function applyOps(state, ops) {
  for (const op of ops) {
    const path = op.path;
    let node = state;
    for (const key of path.slice(0, -1)) {
      // Only own entries count: a key such as "__proto__" or "toString" is data, as on the server.
      let next = Object.hasOwn(node, key) ? node[key] : undefined;
      if (!isPlainObject(next)) {
        if (op.op === "delete") { node = null; break; }
        next = {};
        putOwn(node, key, next);
      }
      node = next;
    }
    if (node === null) continue;
    const last = path[path.length - 1];
    if (op.op === "set") putOwn(node, last, op.value);
    else delete node[last];
  }
}

// ---------------------------------------------------------------------------------------------
// Client

class Emitter {
  constructor() { this.handlers = new Map(); }
  /** Calls `handler` for every `type` emitted; returns a function that unsubscribes it. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type)?.delete(handler);
  }
  emitLocal(type, value) {
    for (const handler of this.handlers.get(type) ?? []) {
      try { handler(value); } catch (err) { console.error(err); }
    }
  }
}

/** A request the server refused: `code` is the protocol's error code. */
export class ParlorError extends Error {
  constructor(frame) {
    super(`${frame.code}: ${frame.message}`);
    this.code = frame.code;
    this.ref = frame.ref;
  }
}

/**
 * A room this session is in. Its fields follow the server: `members` (session ids, oldest
 * first), `owner`, `locked`, `metadata`, `state` (a mirror of the shared state) and `version`.
 * Events: "event", "presence", "update" (owner/lock/metadata), "state" (after each patch),
 * "left".
 */
export class Room extends Emitter {
  constructor(client, joined) {
    super();
    this.client = client;
    this.reset(joined);
  }

  /** Takes everything from a `joined` (on joining, or a snapshot after a resume). */
  reset(joined) {
    this.name = joined.room;
    this.members = joined.members;
    this.away = new Set(joined.away ?? []);
    this.users = joined.users ?? {};
    this.owner = joined.owner;
    this.maxMembers = joined.max_members;
    this.locked = joined.locked;
    this.private = joined.private;
    this.metadata = joined.metadata;
    this.state = joined.state;
    this.version = joined.version;
    // Where this client is in the room's history, for a resume.
    this.epoch = joined.epoch;
    this.next = joined.offset;
  }

  /** This client's position in the room, as `resume` takes it. */
  get position() { return { room: this.name, epoch: this.epoch, offset: this.next }; }

  get isOwner() { return this.owner === this.client.session; }

  emit(event, data = null, { echo = false } = {}) {
    return this.client.request({ type: "emit", room: this.name, event, data, echo });
  }
  leave() { return this.client.request({ type: "leave", room: this.name }); }
  lock() { return this.client.request({ type: "lock", room: this.name }); }
  unlock() { return this.client.request({ type: "unlock", room: this.name }); }
  kick(session) { return this.client.request({ type: "kick", room: this.name, session }); }
  setMetadata(metadata) {
    return this.client.request({ type: "set_metadata", room: this.name, metadata });
  }
  /** Applies ops to the shared state; with `ifVersion`, only if it is still at that version. */
  update(ops, ifVersion) {
    const frame = { type: "update_state", room: this.name, ops };
    if (ifVersion !== undefined) frame.if_version = ifVersion;
    return this.client.request(frame);
  }
  set(path, value, ifVersion) { return this.update([{ op: "set", path, value }], ifVersion); }
  delete(path, ifVersion) { return this.update([{ op: "delete", path }], ifVersion); }

  applyPatch(frame) {
    for (const patch of frame.patches) {
      if (patch.version <= this.version) continue;
      applyOps(this.state, patch.ops);
      this.version = patch.version;
      this.emitLocal("state", patch);
    }
  }
}

/**
 * One connection to Parlor. Events: "event", "presence", "direct", "lobby", "left", "error"
 * (errors without a waiting request), "close".
 */
export class Parlor extends Emitter {
  /** Opens a connection and resolves once the server's `welcome` arrives. */
  static connect(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const client = new Parlor(ws);
      ws.addEventListener("close", (e) => reject(new Error(`closed before welcome (${e.code})`)), { once: true });
      client.welcomed = resolve.bind(null, client);
    });
  }

  /**
   * After `previous` lost its connection: connects again and takes its session back with
   * `resume`, keeping its Room objects (caught up by replay, or reset from a snapshot).
   * Resolves with the new Parlor; rejects (ParlorError `resume_failed`) when the session is
   * gone, and the caller then starts afresh. Listeners on the old Parlor are not carried over.
   */
  static async resume(url, previous) {
    const client = await Parlor.connect(url);
    client.adopting = previous.rooms;
    const rooms = [...previous.rooms.values()].map((room) => room.position);
    try {
      await client.request({
        type: "resume", session: previous.session, token: previous.resumeToken, rooms,
      });
    } catch (err) {
      client.close();
      throw err;
    }
    client.resumeToken = previous.resumeToken;
    return client;
  }

  constructor(ws) {
    super();
    this.ws = ws;
    this.nextRef = 1;
    this.pending = new Map();   // ref -> { resolve, reject, joined }
    this.rooms = new Map();     // name -> Room
    this.lobby = null;          // Map of room name -> info while subscribed
    this.session = null;
    ws.addEventListener("message", (e) => this.receive(e.data));
    ws.addEventListener("close", (e) => {
      for (const { reject } of this.pending.values()) reject(new Error(`connection closed (${e.code})`));
      this.pending.clear();
      this.emitLocal("close", { code: e.code, reason: e.reason });
    });
  }

  /** Sends a request frame with a fresh `ref`; resolves with its answer. */
  request(frame) {
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject, joined: null });
      this.ws.send(encode({ ...frame, ref }));
    });
  }

  async join(room, password) {
    const frame = { type: "join", room };
    if (password) frame.password = password;
    return this.request(frame);
  }
  /** Creates a room (`room` omitted: the server names it) and joins it as owner. */
  create(options = {}, room) {
    const frame = { type: "create", options };
    if (room) frame.room = room;
    return this.request(frame);
  }
  joinOrCreate(filter = {}, options = {}) {
    return this.request({ type: "join_or_create", filter, options });
  }
  listRooms(filter = {}, limit) {
    const frame = { type: "list_rooms", filter };
    if (limit !== undefined) frame.limit = limit;
    return this.request(frame);
  }
  /** Keeps `this.lobby` (name -> room info) up to date; "lobby" fires after each change. */
  async subscribeLobby(filter = {}) {
    const rooms = await this.request({ type: "subscribe_lobby", filter });
    this.lobby = new Map(rooms.map((r) => [r.room, r]));
    this.emitLocal("lobby", this.lobby);
    return this.lobby;
  }
  async unsubscribeLobby() {
    await this.request({ type: "unsubscribe_lobby" });
    this.lobby = null;
  }
  send(to, event, data = null) { return this.request({ type: "send", to, event, data }); }
  close() { this.ws.close(1000); }

  /** Answers the request an `ok`, `room_list`, `resumed` or `error` names. */
  settle(frame) {
    const waiting = this.pending.get(frame.ref);
    if (!waiting) {
      if (frame.type === "error") this.emitLocal("error", new ParlorError(frame));
      return;
    }
    this.pending.delete(frame.ref);
    if (frame.type === "error") waiting.reject(new ParlorError(frame));
    else if (frame.type === "room_list") waiting.resolve(frame.rooms);
    else if (frame.type === "resumed") waiting.resolve(frame);
    else waiting.resolve(waiting.joined ?? undefined);
  }

  receive(data) {
    let frame;
    try {
      frame = decode(new Uint8Array(data));
    } catch (err) {
      console.error("undecodable frame from the server", err);
      return;
    }
    const room = this.rooms.get(frame.room);
    // Every room frame moves this client's position in that room's history.
    if (room && typeof frame.offset === "number" && frame.type !== "joined") {
      room.next = Math.max(room.next, frame.offset + 1);
    }
    switch (frame.type) {
      case "welcome":
        this.session = frame.session;
        this.welcome = frame;
        this.resumeToken = frame.resume_token;
        this.welcomed?.();
        break;
      case "resumed":
        // The rooms come over before the replayed frames that follow are read.
        this.session = frame.session;
        for (const { room: name } of frame.rooms) {
          const adopted = this.adopting?.get(name);
          if (adopted) {
            adopted.client = this;
            this.rooms.set(name, adopted);
          }
        }
        this.adopting = null;
        this.settle(frame);
        break;
      case "joined": {
        const existing = this.rooms.get(frame.room);
        const joined = existing ?? new Room(this, frame);
        if (existing) {
          existing.reset(frame);
          existing.emitLocal("reset", frame);
        }
        this.rooms.set(frame.room, joined);
        const waiting = this.pending.get(frame.ref);
        if (waiting) waiting.joined = joined;
        break;
      }
      case "ok":
      case "room_list":
      case "error":
        this.settle(frame);
        break;
      case "left":
        this.rooms.delete(frame.room);
        room?.emitLocal("left", frame);
        this.emitLocal("left", frame);
        break;
      case "presence":
        if (room) {
          if (frame.status === "joined") {
            room.members.push(frame.session);
            if (frame.user) room.users[frame.session] = frame.user;
          } else if (frame.status === "left") {
            room.members = room.members.filter((m) => m !== frame.session);
            room.away.delete(frame.session);
          } else if (frame.status === "away") {
            room.away.add(frame.session);
          } else if (frame.status === "back") {
            room.away.delete(frame.session);
          }
          room.emitLocal("presence", frame);
        }
        this.emitLocal("presence", frame);
        break;
      case "room_update":
        if (room) {
          room.owner = frame.owner;
          room.locked = frame.locked;
          room.metadata = frame.metadata;
          room.emitLocal("update", frame);
        }
        break;
      case "state_patch":
        room?.applyPatch(frame);
        break;
      case "event":
        room?.emitLocal("event", frame);
        this.emitLocal("event", frame);
        break;
      case "direct":
        this.emitLocal("direct", frame);
        break;
      case "lobby":
        if (this.lobby) {
          for (const info of [...frame.added, ...frame.changed]) this.lobby.set(info.room, info);
          for (const gone of frame.removed) this.lobby.delete(gone);
          this.emitLocal("lobby", this.lobby);
        }
        break;
      default:
        // Frames from a newer server are ignored, as PROTOCOL.md asks.
        break;
    }
  }
}
