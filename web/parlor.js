// parlor.js: a browser client for Parlor, served by the server at /parlor.js; types in
// parlor.d.ts; `npm install` it from the repository (README, "A client in a few lines").
//
//   import { Parlor } from "/parlor.js";
//   const parlor = await Parlor.connect("ws://localhost:8080/ws");
//   const room = await parlor.joinOrCreate({ mode: "duel" }, { max_members: 2 });
//   room.on("event", (e) => console.log(e.from, e.event, e.data));
//   await room.emit("move", { x: 1 });
//   await room.set(["score", parlor.session], 10);   // shared state; room.state mirrors it
//
// It speaks protocol v1 (protocol/PROTOCOL.md): binary MessagePack frames over one WebSocket.
//
// CONNECTING. `Parlor.connect(url, options)` resolves once the server's `welcome` arrives, or
// rejects with ParlorError `connect_failed` (the first connection is not retried). Options:
//   token             a JWT (or a function returning one, or a promise of one, called before
//                     each connection) for a server with [auth]: sent as the subprotocol
//                     `bearer.<jwt>` beside `parlor`, on the first connection and every reconnect.
//   reconnect         false, or { minDelayMs: 500, maxDelayMs: 10000, maxAttempts: Infinity }
//                     (the defaults; reconnecting is on unless this is false).
//   waitForReconnect  default of the request option below (false).
//   timeoutMs         default of the request option below (none).
//   connectTimeoutMs  how long one connection may take to be welcomed (10000).
//   WebSocket         the WebSocket class (globalThis.WebSocket).
//
// RECONNECTING. When the connection drops (close codes 1001 server going away, 1005, 1006 lost,
// 1011, 1012, 1013, 1014, 4000 heartbeat timeout) the client opens a new one after a delay
// drawn at random between 0 and min(maxDelayMs, minDelayMs * 2^(attempt-1)) (exponential
// backoff with full jitter), and sends `resume` with the session's resume token and its
// position (epoch, offset) in each room. Its Room objects survive: caught up by the missed
// frames replayed as ordinary events, or reset from a snapshot (Room "reset"). If the resume
// is refused (`resume_failed`: the grace passed, or the server restarted and lost the session)
// or the session was in no room, the client carries on as the new connection's fresh session
// and tells which rooms it lost. A lobby subscription is made again either way. After any
// other close code (1000, 1002, 1008 rate limit or slow consumer, 1009, 4001 kicked, 4002
// replaced by a resume elsewhere, and codes it does not know), after `close()`, or after
// maxAttempts failed attempts, the client is closed for good. `parlor.reconnect()` tries at once
// (also after the client gave up, or with `reconnect: false`). Events on the Parlor:
//   "reconnecting"  { attempt, delay, code, reason }: the connection is down (`code`, `reason`
//                   from the close); attempt number `attempt` starts in `delay` ms.
//   "resumed"       { session, recovered, snapshot, lost }: the session is back; room names
//                   replayed, reset from a snapshot (their frames and "reset" follow), and lost.
//   "reset"         { session, previous, lost, error }: a fresh session replaced `previous`;
//                   `lost` names the rooms it was in (each Room fires "left", reason "lost");
//                   `error` is the resume's refusal (null if none was tried).
//   "close"         { code, reason, error }: closed for good; nothing more will happen.
// `parlor.state` is "open", "reconnecting" or "closed".
//
// REQUESTS return promises settled by the server's answer to their `ref` (the joins resolve
// with their Room), or rejected with a ParlorError whose `code` is the server's error code or
// one of the client's: `disconnected` (made while reconnecting, or the connection ended while
// it waited for its answer), `closed` (the client is closed for good), `timeout`. A request
// never waits forever unless it has neither a connection nor a timeout and asked to wait. Every
// request method takes request options last (`emit` merges them with `echo`; `set`, `delete`
// and `update` take `ifVersion` there too):
//   timeoutMs         reject with `timeout` after this long. Its outcome is then UNKNOWN: the
//                     server may have carried it out (a late answer is ignored; a late `joined`
//                     still adds its Room to `parlor.rooms`).
//   waitForReconnect  made while reconnecting: hold it and send it once the session is back
//                     (resumed or reset) instead of rejecting it. A request already sent when the
//                     connection ends still rejects with `disconnected`: it is never sent twice,
//                     since the server may have carried it out.
//
// EVENTS. Parlor: "event", "presence", "direct", "lobby", "left", "error" (an error frame no
// request waits for), and the four above. Room: "event", "presence", "update", "state",
// "reset", "left". `on` returns a function that unsubscribes; `once` fires once; `off` removes.
//
// VALUES (the codec below): null/undefined -> nil (undefined object fields are left out),
// booleans, numbers (integers up to 2^53 as integers, others as float 64), BigInt (64-bit
// integers; a RangeError beyond), strings, Uint8Array/ArrayBuffer -> binary, arrays, plain
// objects -> maps with string keys, Map -> map with any keys, Date -> the timestamp extension
// (type -1), Ext -> any other extension. Decoding gives the same back: maps with string keys
// are plain objects, 64-bit integers are numbers when exact and BigInts otherwise, timestamps
// are Dates (to the millisecond). A Set, a class instance, another typed array or a cycle
// throws a TypeError (a Set would otherwise go out as {}): send [...set] or a plain object.

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

/** Handlers by emitter, then by event name: { handler, once } in the order added. */
const handlerLists = new WeakMap();

function handlersOf(emitter, type) {
  let byType = handlerLists.get(emitter);
  if (!byType) handlerLists.set(emitter, (byType = new Map()));
  if (!byType.has(type)) byType.set(type, []);
  return byType.get(type);
}

/** Calls the handlers of `type` with `value`; a handler that throws is logged, not fatal. */
function fire(emitter, type, value) {
  const list = handlerLists.get(emitter)?.get(type);
  if (!list) return;
  for (const entry of [...list]) {
    if (entry.once) emitter.off(type, entry.handler);
    try { entry.handler(value); } catch (err) { console.error(err); }
  }
}

/** Calls handlers by event name; the base of Parlor and Room. */
export class Emitter {
  /** Calls `handler` for every `type` emitted; returns a function that unsubscribes it. */
  on(type, handler) { return add(this, type, handler, false); }

  /** Calls `handler` for the next `type` emitted only; returns a function that unsubscribes it. */
  once(type, handler) { return add(this, type, handler, true); }

  /** Unsubscribes `handler` (added with `on` or `once`) from `type`. */
  off(type, handler) {
    const list = handlersOf(this, type);
    const at = list.findIndex((entry) => entry.handler === handler);
    if (at >= 0) list.splice(at, 1);
  }
}

function add(emitter, type, handler, once) {
  if (typeof handler !== "function") throw new TypeError("a handler must be a function");
  handlersOf(emitter, type).push({ handler, once });
  return () => emitter.off(type, handler);
}

/**
 * A request that failed. `code` is the protocol's error code when the server refused it, or
 * one of the client's own: `disconnected` (no connection when it was made, or the connection
 * ended while it waited: a request already sent may or may not have been carried out),
 * `closed` (the client is closed for good), `timeout` (no answer within `timeoutMs`: it may or
 * may not have been carried out), `connect_failed` (no connection could be opened).
 */
export class ParlorError extends Error {
  constructor(code, message, details = {}) {
    super(`${code}: ${message}`);
    this.name = "ParlorError";
    this.code = code;
    this.ref = details.ref ?? null;
    this.closeCode = details.closeCode ?? null;
    this.reason = details.reason ?? null;
  }
}

/** Frames that take a place in a room's history, and move the client's position in it. */
const ROOM_FRAMES = new Set(["event", "presence", "room_update", "state_patch"]);

/**
 * Close codes after which the client comes back by itself: going away (1001, a server shutting
 * down), no status (1005), a lost connection (1006), a server error (1011), restart or try again
 * later (1012, 1013), a bad gateway (1014) and a heartbeat timeout (4000). Any other close
 * means "do not come back": the client closed it (1000), kicked (4001), replaced by a resume
 * elsewhere (4002), a policy close such as rate limits or a slow consumer (1008), a protocol
 * error or an oversized message (1002, 1009), and codes this client does not know.
 */
const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014, 4000]);

const RECONNECT_DEFAULTS = { minDelayMs: 500, maxDelayMs: 10_000, maxAttempts: Infinity };
/** Errors that say the server cannot serve a request now (a cluster node cut off from Redis),
 * not that it never will. */
const TRANSIENT_CODES = new Set(["unavailable", "outcome_unknown", "overloaded"]);

/** The options of `Parlor.connect`, with every default filled in. */
function settings(options) {
  const reconnect = options.reconnect === false ? null
    : { ...RECONNECT_DEFAULTS, ...(options.reconnect === true ? {} : options.reconnect ?? {}) };
  return {
    token: options.token ?? null,
    reconnect,
    waitForReconnect: options.waitForReconnect ?? false,
    timeoutMs: options.timeoutMs ?? null,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    WebSocket: options.WebSocket ?? globalThis.WebSocket,
  };
}

/**
 * A room this session is in. Its fields follow the server: `members` (session ids, oldest
 * first), `away` (members whose connection dropped), `users` (session id -> user id), `owner`,
 * `locked` (closed to newcomers: full, or locked by the owner), `lockedByOwner` (locked by
 * the owner, full or not: what `unlock` undoes), `private`, `maxMembers`, `metadata`, `state`
 * (a mirror of the shared state), `version`, `roomType` (null for a plain room) and, in a room
 * with logic, `view` (what this member
 * alone may see, as the room's logic last set it; null until it does). Events: "event",
 * "presence", "update" (owner/lock/metadata), "state" (after each patch), "view" (the member's
 * view changed), "reset" (replaced by a snapshot after a resume), "left" (reason `lost`: the
 * client lost the room across a reconnect).
 */
export class Room extends Emitter {
  constructor(client, joined) {
    super();
    this.client = client;
    resetRoom(this, joined);
  }

  /** This client's position in the room, as `resume` takes it. */
  get position() { return { room: this.name, epoch: this.epoch, offset: this.next }; }

  get isOwner() { return this.owner === this.client.session; }

  /** Emits an event to the room; `echo` also delivers it to this client. */
  emit(event, data = null, options = {}) {
    const { echo = false, ...rest } = options;
    return this.client.request({ type: "emit", room: this.name, event, data, echo }, rest);
  }
  leave(options) { return this.client.request({ type: "leave", room: this.name }, options); }
  lock(options) { return this.client.request({ type: "lock", room: this.name }, options); }
  unlock(options) { return this.client.request({ type: "unlock", room: this.name }, options); }
  kick(session, options) {
    return this.client.request({ type: "kick", room: this.name, session }, options);
  }
  setMetadata(metadata, options) {
    return this.client.request({ type: "set_metadata", room: this.name, metadata }, options);
  }
  /**
   * Applies ops to the shared state. The last argument is the version the state must still be
   * at (compare-and-set), or request options that may hold it as `ifVersion`.
   */
  update(ops, ifVersion) {
    const { ifVersion: version, ...options } = typeof ifVersion === "object" && ifVersion !== null
      ? ifVersion : { ifVersion };
    const frame = { type: "update_state", room: this.name, ops };
    if (version !== undefined && version !== null) frame.if_version = version;
    return this.client.request(frame, options);
  }
  set(path, value, ifVersion) { return this.update([{ op: "set", path, value }], ifVersion); }
  delete(path, ifVersion) { return this.update([{ op: "delete", path }], ifVersion); }
}

/** Takes everything from a `joined` (on joining, or a snapshot after a resume). */
function resetRoom(room, joined) {
  room.name = joined.room;
  room.members = joined.members;
  room.away = new Set(joined.away ?? []);
  room.users = joined.users ?? {};
  room.owner = joined.owner;
  room.maxMembers = joined.max_members;
  room.locked = joined.locked;
  room.lockedByOwner = joined.locked_by_owner ?? false;
  room.private = joined.private;
  room.metadata = joined.metadata;
  room.state = joined.state;
  room.version = joined.version;
  // Where this client is in the room's history, for a resume.
  room.epoch = joined.epoch;
  room.next = joined.offset;
  room.roomType = joined.room_type ?? null;
  // The server sends the member's view again after a `joined`.
  room.view ??= null;
}

function applyPatch(room, frame) {
  for (const patch of frame.patches) {
    if (patch.version <= room.version) continue;
    applyOps(room.state, patch.ops);
    room.version = patch.version;
    fire(room, "state", patch);
  }
}

/**
 * One client of Parlor: a session, kept across connections. Open one with `Parlor.connect`.
 * `state` is "open", "reconnecting" or "closed". Events: "event", "presence", "direct",
 * "lobby", "left", "error" (errors without a waiting request), "reconnecting", "resumed",
 * "reset" and "close" (closed for good); the top of this file says what each carries.
 */
export class Parlor extends Emitter {
  /**
   * Opens a connection and resolves once the server's `welcome` arrives; rejects with a
   * ParlorError `connect_failed` when it cannot (the first connection is not retried).
   */
  static async connect(url, options = {}) {
    const client = new Parlor(url, options, Parlor.#creating);
    await client.#start();
    return client;
  }

  static #creating = Symbol("Parlor.connect");

  #options;
  #ws = null;
  #welcomeWaiter = null;    // { resolve, reject } while a connection waits for its welcome
  #nextRef = 1;
  #pending = new Map();     // ref -> request sent, waiting for its answer
  #queued = [];             // requests waiting for the connection to come back
  #openWaiters = [];        // { resolve, reject } of reconnect() calls
  #attempt = 0;             // reconnect attempts since the connection was last open
  #retryTimer = null;
  #lastClose = null;        // { code, reason } of the connection that ended last
  #expired = new Set();     // refs of requests that timed out, whose answers are dropped
  #lobbyFilter = null;      // the filter of the lobby subscription, made again on reconnect

  constructor(url, options, key) {
    super();
    if (key !== Parlor.#creating) throw new TypeError("use Parlor.connect(url, options)");
    this.#options = settings(options);
    this.url = url;
    this.state = "connecting";
    this.session = null;      // this session's id
    this.user = null;         // the authenticated user id, when the server checks tokens
    this.welcome = null;      // the current connection's `welcome`
    this.resumeToken = null;  // the secret that takes this session back
    this.rooms = new Map();   // name -> Room
    this.lobby = null;        // Map of room name -> info while subscribed
  }

  /** Sends a request frame with a fresh `ref`; resolves with its answer (see the top of file). */
  request(frame, options = {}) {
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs;
    const wait = options.waitForReconnect ?? this.#options.waitForReconnect;
    return new Promise((resolve, reject) => {
      const request = { frame, resolve, reject, joined: null, timer: null, ref: null };
      if (timeoutMs !== null && timeoutMs !== undefined) {
        request.timer = setTimeout(() => this.#expire(request, timeoutMs), timeoutMs);
      }
      if (this.state === "open") this.#transmit(request);
      else if (this.state === "closed") this.#fail(request, this.#closedError());
      else if (wait) this.#queued.push(request);
      else {
        this.#fail(request, new ParlorError("disconnected",
          "not connected (reconnecting); the request was not sent", this.#lastClose ?? {}));
      }
    });
  }

  /**
   * Joins a room (created with default rules if it does not exist, unless `options.create` is
   * false: then only an existing room, else `room_not_found`); resolves with its Room.
   */
  join(room, password, options) {
    const frame = { type: "join", room };
    if (password) frame.password = password;
    if (options?.create === false) frame.create = false;
    return this.request(frame, options);
  }
  /** Creates a room (`room` omitted: the server names it) and joins it as owner. */
  create(options = {}, room, requestOptions) {
    const frame = { type: "create", options };
    if (room) frame.room = room;
    return this.request(frame, requestOptions);
  }
  /** Joins the fullest open public room matching `filter`, or creates one with `options`. */
  joinOrCreate(filter = {}, options = {}, requestOptions) {
    return this.request({ type: "join_or_create", filter, options }, requestOptions);
  }
  listRooms(filter = {}, limit, options) {
    const frame = { type: "list_rooms", filter };
    if (limit !== undefined && limit !== null) frame.limit = limit;
    return this.request(frame, options);
  }
  /**
   * Keeps `this.lobby` (name -> room info) up to date; "lobby" fires after each change. The
   * subscription is made again, with the same filter, after every reconnect. When the server
   * cannot serve it now (`unavailable`, `outcome_unknown`, `overloaded`: a degraded cluster
   * node), the call rejects, and the client keeps trying by itself, backing off, until it gets
   * it ("lobby" then fires) or `unsubscribeLobby` is called.
   */
  async subscribeLobby(filter = {}, options) {
    this.#lobbyFilter = filter;
    let rooms;
    try {
      rooms = await this.request({ type: "subscribe_lobby", filter }, options);
    } catch (err) {
      if (TRANSIENT_CODES.has(err.code) && this.#lobbyFilter === filter) {
        this.#retryLobby(filter, 0);
      } else if (this.#lobbyFilter === filter && err.code !== "disconnected") {
        this.#lobbyFilter = null;
      }
      throw err;
    }
    this.lobby = new Map(rooms.map((r) => [r.room, r]));
    fire(this, "lobby", this.lobby);
    return this.lobby;
  }
  async unsubscribeLobby(options) {
    this.#lobbyFilter = null;
    await this.request({ type: "unsubscribe_lobby" }, options);
    this.lobby = null;
  }

  /** Sends an event to one session that shares a room with this one. */
  send(to, event, data = null, options) {
    return this.request({ type: "send", to, event, data }, options);
  }

  /**
   * Reconnects now, without waiting for the next attempt's delay (or after the client gave up,
   * or with `reconnect: false`): resumes the session, or starts a fresh one. Resolves once the
   * client is open again; rejects if it closes for good first.
   */
  reconnect() {
    if (this.state === "open") return Promise.resolve();
    const opened = new Promise((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
    if (this.#retryTimer !== null || this.state === "closed") {
      if (this.state === "closed") this.#attempt = 0; // a new series of attempts
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
      this.state = "reconnecting";
      this.#attemptReconnect(true);
    }
    return opened;
  }

  /** Closes the connection for good (code 1000): the session leaves its rooms at once. */
  close() {
    if (this.state === "closed") return;
    this.#finish({ code: 1000, reason: "closed by the client" });
  }

  // --- connections -----------------------------------------------------------------------------

  async #start() {
    try {
      this.#adopt(await this.#open());
    } catch (err) {
      this.state = "closed";
      throw err;
    }
    this.state = "open";
  }

  /** Opens a WebSocket; resolves with the server's `welcome`, rejects if it closes first. */
  async #open() {
    const { token: source, WebSocket: Socket, connectTimeoutMs } = this.#options;
    const token = typeof source === "function" ? await source() : source;
    if (this.state === "closed") throw this.#closedError();
    const ws = token ? new Socket(this.url, ["parlor", `bearer.${token}`]) : new Socket(this.url);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    ws.addEventListener("message", (e) => { if (this.#ws === ws) this.#receive(e.data); });
    ws.addEventListener("close", (e) => { if (this.#ws === ws) this.#closed(e.code, e.reason); });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#welcomeWaiter = null;
        this.#ws = null;
        ws.close();
        reject(new ParlorError("connect_failed", `no welcome from ${this.url} within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      this.#welcomeWaiter = {
        resolve: (welcome) => { clearTimeout(timer); resolve(welcome); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      };
    });
  }

  /** Makes `welcome`'s session this client's own. */
  #adopt(welcome) {
    this.welcome = welcome;
    this.session = welcome.session;
    this.user = welcome.user ?? null;
    this.resumeToken = welcome.resume_token;
  }

  /** The current connection ended (`code` as the close event gives it). */
  #closed(code, reason) {
    this.#ws = null;
    this.#expired.clear();
    this.#lastClose = { closeCode: code, code, reason };
    if (this.#welcomeWaiter) {
      const waiter = this.#welcomeWaiter;
      this.#welcomeWaiter = null;
      waiter.reject(new ParlorError("connect_failed",
        `the connection to ${this.url} closed before the server's welcome (close code ${code}; a refused token or an unreachable server look alike to a browser)`,
        { closeCode: code }));
      return;
    }
    this.#failPending(new ParlorError("disconnected",
      `the connection closed (${code}${reason ? ` ${reason}` : ""}) before an answer came; the request may or may not have been carried out`,
      { closeCode: code }));
    if (this.state === "open") {
      if (this.#options.reconnect && RECONNECT_CODES.has(code)) this.#scheduleReconnect();
      else this.#finish({ code, reason });
    }
    // "reconnecting": the attempt that opened this connection sees its resume fail and retries.
  }

  #scheduleReconnect() {
    const { minDelayMs, maxDelayMs } = this.#options.reconnect;
    this.#attempt += 1;
    // Exponential backoff with full jitter: anywhere from 0 to the attempt's ceiling.
    const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(this.#attempt - 1, 30));
    const delay = Math.round(Math.random() * ceiling);
    this.state = "reconnecting";
    fire(this, "reconnecting", {
      attempt: this.#attempt, delay, code: this.#lastClose?.code ?? null, reason: this.#lastClose?.reason ?? "",
    });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#attemptReconnect(false);
    }, delay);
  }

  /** One reconnect attempt: connect, then resume the session or start afresh. */
  async #attemptReconnect(forced) {
    let welcome;
    try {
      welcome = await this.#open();
    } catch (err) {
      return this.#retry(err, forced);
    }
    const names = [...this.rooms.keys()];
    let resumed = null;
    let refusal = null;
    if (names.length > 0 && this.resumeToken) {
      // A session in no room is not held by the server: there is nothing to resume.
      try {
        resumed = await this.#internal({
          type: "resume", session: this.session, token: this.resumeToken,
          rooms: [...this.rooms.values()].map((room) => room.position),
        });
      } catch (err) {
        if (err.code !== "resume_failed") {
          // This connection is of no use (a resume must be a connection's first message):
          // close it, or it would stay open beside the next attempt's, an idle session.
          const ws = this.#ws;
          this.#ws = null;
          if (ws) ws.close(1000);
          return this.#retry(err, forced);
        }
        refusal = err; // The connection carries on as the session its welcome named.
      }
    }
    if (this.state === "closed") return;
    this.#attempt = 0;
    this.state = "open";
    if (resumed) {
      // The connection's own session was discarded: the welcome names the resumed one.
      this.welcome = { ...welcome, session: this.session, resume_token: this.resumeToken };
      const kept = new Map(resumed.rooms.map((r) => [r.room, r]));
      const lost = names.filter((name) => !kept.has(name));
      for (const info of resumed.rooms) {
        const room = this.rooms.get(info.room);
        if (room && info.recovered) room.epoch = info.epoch;
      }
      this.#lose(lost);
      fire(this, "resumed", {
        session: this.session,
        recovered: resumed.rooms.filter((r) => r.recovered).map((r) => r.room),
        snapshot: resumed.rooms.filter((r) => !r.recovered).map((r) => r.room),
        lost,
      });
    } else {
      const previous = this.session;
      this.#adopt(welcome);
      this.#lose(names);
      fire(this, "reset", { session: this.session, previous, lost: names, error: refusal });
    }
    if (this.#lobbyFilter !== null) this.#resubscribeLobby();
    this.#settleOpenWaiters(null);
    // Requests that waited for the connection go out in the order they were made.
    for (const request of this.#queued.splice(0)) this.#transmit(request);
  }

  /** A reconnect attempt failed: another one, or the end. */
  #retry(err, forced) {
    if (this.state === "closed") return;
    const { maxAttempts } = this.#options.reconnect ?? { maxAttempts: 0 };
    if (this.#attempt >= maxAttempts || (forced && !this.#options.reconnect)) {
      const code = err.closeCode ?? this.#lastClose?.code ?? 1006;
      this.#finish({ code, reason: `gave up reconnecting after ${this.#attempt} attempts`, error: err });
    } else {
      this.#scheduleReconnect();
    }
  }

  #resubscribeLobby(attempt = 0) {
    const filter = this.#lobbyFilter;
    this.#internal({ type: "subscribe_lobby", filter }).then((rooms) => {
      if (this.#lobbyFilter !== filter) return;
      this.lobby = new Map(rooms.map((r) => [r.room, r]));
      fire(this, "lobby", this.lobby);
    }, (err) => {
      if (err.code === "disconnected" || err.code === "closed") return;
      fire(this, "error", err);
      if (TRANSIENT_CODES.has(err.code)) this.#retryLobby(filter, attempt);
    });
  }

  /** Tries the lobby subscription again after a backoff, while it is still wanted. */
  #retryLobby(filter, attempt) {
    const { minDelayMs, maxDelayMs } = this.#options.reconnect || RECONNECT_DEFAULTS;
    const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt, 30));
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    setTimeout(() => {
      // A reconnect meanwhile subscribes again by itself; so does a new subscribeLobby.
      if (this.state === "open" && this.#lobbyFilter === filter) this.#resubscribeLobby(attempt + 1);
    }, delay);
  }

  /** Rooms the session is no longer in after a reconnect: each hears "left", reason `lost`. */
  #lose(names) {
    for (const name of names) {
      const room = this.rooms.get(name);
      this.rooms.delete(name);
      const frame = { type: "left", room: name, reason: "lost" };
      if (room) fire(room, "left", frame);
      fire(this, "left", frame);
    }
  }

  /** The client is closed for good: every request settles, and "close" fires once. */
  #finish({ code, reason, error = null }) {
    this.state = "closed";
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.close(1000);
    this.#lastClose = { closeCode: code, code, reason };
    const closed = this.#closedError();
    if (this.#welcomeWaiter) {
      this.#welcomeWaiter.reject(closed);
      this.#welcomeWaiter = null;
    }
    this.#failPending(new ParlorError("closed",
      "the client closed before the answer came; the request may or may not have been carried out", this.#lastClose));
    for (const request of this.#queued.splice(0)) this.#fail(request, closed);
    this.#settleOpenWaiters(error ?? new ParlorError("closed", `the connection closed (${code}${reason ? ` ${reason}` : ""})`, { closeCode: code }));
    fire(this, "close", { code, reason, error });
  }

  #settleOpenWaiters(error) {
    for (const waiter of this.#openWaiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  #closedError() {
    const last = this.#lastClose;
    const why = last ? ` (${last.code}${last.reason ? ` ${last.reason}` : ""})` : "";
    return new ParlorError("closed", `the client is closed${why}; the request was not sent`, last ?? {});
  }

  // --- requests --------------------------------------------------------------------------------

  /** A request of the client's own, sent on the current connection whatever its state. */
  #internal(frame) {
    return new Promise((resolve, reject) => {
      this.#transmit({ frame, resolve, reject, joined: null, timer: null, ref: null });
    });
  }

  #transmit(request) {
    const ref = this.#nextRef++;
    let bytes;
    try {
      bytes = encode({ ...request.frame, ref });
    } catch (err) {
      return this.#fail(request, err); // A TypeError or RangeError: nothing was sent.
    }
    if (!this.#ws) {
      return this.#fail(request, new ParlorError("disconnected", "not connected; the request was not sent"));
    }
    request.ref = ref;
    this.#pending.set(ref, request);
    try {
      this.#ws.send(bytes);
    } catch (err) {
      this.#pending.delete(ref);
      this.#fail(request, new ParlorError("disconnected", `the request could not be sent: ${err.message}`));
    }
  }

  #expire(request, timeoutMs) {
    request.timer = null;
    if (request.ref !== null && this.#pending.delete(request.ref)) this.#expired.add(request.ref);
    const at = this.#queued.indexOf(request);
    if (at >= 0) this.#queued.splice(at, 1);
    request.reject(new ParlorError("timeout",
      `no answer within ${timeoutMs} ms; the request may or may not have been carried out`, { ref: request.ref }));
  }

  #fail(request, error) {
    clearTimeout(request.timer);
    request.reject(error);
  }

  #failPending(error) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const request of pending) this.#fail(request, error);
  }

  /** Answers the request an `ok`, `room_list`, `resumed` or `error` names. */
  #settle(frame) {
    const waiting = this.#pending.get(frame.ref);
    if (!waiting) {
      if (this.#expired.delete(frame.ref)) return; // It timed out; the caller has its answer.
      if (frame.type === "error") fire(this, "error", new ParlorError(frame.code, frame.message, { ref: frame.ref, reason: frame.reason }));
      return;
    }
    this.#pending.delete(frame.ref);
    clearTimeout(waiting.timer);
    if (frame.type === "error") waiting.reject(new ParlorError(frame.code, frame.message, { ref: frame.ref, reason: frame.reason }));
    else if (frame.type === "room_list") waiting.resolve(frame.rooms);
    else if (frame.type === "resumed") waiting.resolve(frame);
    // A room's logic may answer with data (an `ok` with `data`).
    else if (frame.type === "ok" && frame.data !== undefined) waiting.resolve(frame.data);
    else waiting.resolve(waiting.joined ?? undefined);
  }

  #receive(data) {
    let frame;
    try {
      frame = decode(new Uint8Array(data));
    } catch (err) {
      console.error("undecodable frame from the server", err);
      return;
    }
    const room = typeof frame.room === "string" ? this.rooms.get(frame.room) : undefined;
    // Every room frame moves this client's position in that room's history; one it has seen
    // already (an offset behind its position) is not applied twice.
    if (room && ROOM_FRAMES.has(frame.type) && typeof frame.offset === "number") {
      if (frame.offset < room.next) return;
      room.next = frame.offset + 1;
    }
    switch (frame.type) {
      case "welcome":
        if (this.#welcomeWaiter) {
          const waiter = this.#welcomeWaiter;
          this.#welcomeWaiter = null;
          waiter.resolve(frame);
        }
        break;
      case "joined": {
        const existing = this.rooms.get(frame.room);
        const joined = existing ?? new Room(this, frame);
        if (existing) {
          resetRoom(existing, frame);
          fire(existing, "reset", frame);
        }
        this.rooms.set(frame.room, joined);
        const waiting = this.#pending.get(frame.ref);
        if (waiting) waiting.joined = joined;
        break;
      }
      case "ok":
      case "room_list":
      case "resumed":
      case "error":
        this.#settle(frame);
        break;
      case "left":
        this.rooms.delete(frame.room);
        if (room) fire(room, "left", frame);
        fire(this, "left", frame);
        break;
      case "presence":
        if (room) {
          if (frame.status === "joined") {
            if (!room.members.includes(frame.session)) room.members.push(frame.session);
            if (frame.user) room.users[frame.session] = frame.user;
          } else if (frame.status === "left") {
            room.members = room.members.filter((m) => m !== frame.session);
            room.away.delete(frame.session);
          } else if (frame.status === "away") {
            room.away.add(frame.session);
          } else if (frame.status === "back") {
            room.away.delete(frame.session);
          }
          fire(room, "presence", frame);
        }
        fire(this, "presence", frame);
        break;
      case "room_update":
        if (room) {
          room.owner = frame.owner;
          room.locked = frame.locked;
          room.lockedByOwner = frame.locked_by_owner ?? false;
          room.metadata = frame.metadata;
          fire(room, "update", frame);
        }
        break;
      case "state_patch":
        if (room) applyPatch(room, frame);
        break;
      case "event":
        if (room) fire(room, "event", frame);
        fire(this, "event", frame);
        break;
      case "direct":
        fire(this, "direct", frame);
        break;
      case "view":
        // A room with logic: what this member alone may see; it replaces the one before.
        if (room) {
          room.view = frame.data;
          fire(room, "view", frame.data);
        }
        break;
      case "lobby":
        if (this.lobby) {
          for (const info of [...frame.added, ...frame.changed]) this.lobby.set(info.room, info);
          for (const gone of frame.removed) this.lobby.delete(gone);
          fire(this, "lobby", this.lobby);
        }
        break;
      default:
        // Frames from a newer server are ignored, as PROTOCOL.md asks.
        break;
    }
  }
}
