// Checks parlor.js's MessagePack codec: every example of protocol/PROTOCOL.md (decoding the bytes
// gives the documented JSON, encoding the JSON gives the same bytes, and a frame the server calls
// malformed does not decode), then what the codec used to get wrong: Dates (the timestamp
// extension), Sets and other objects that would lose their contents (refused), decoded objects
// (plain, with Object.prototype, and a "__proto__" key as data), 64-bit integers (numbers when
// exact, BigInts beyond 2^53), and the state mirror's ops. Run by tests/server/browser.rs:
//
//   node tests/browser/codec.mjs
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { decode, encode, applyOps, Ext } from "../../web/parlor.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const doc = readFileSync(`${root}protocol/PROTOCOL.md`, "utf8");
const blocks = [...doc.matchAll(/```parlor-example\n([\s\S]*?)```/g)].map((m) => m[1]);
const failures = [];
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => Uint8Array.from(text.trim().split(/\s+/).map((h) => parseInt(h, 16)));

/** Every object in `value` has Object.prototype, as a JSON.parse result would. */
function plainThroughout(value) {
  if (value === null || typeof value !== "object") return true;
  if (Array.isArray(value)) return value.every(plainThroughout);
  if (value instanceof Uint8Array || value instanceof Ext || value instanceof Date) return true;
  return Object.getPrototypeOf(value) === Object.prototype && Object.values(value).every(plainThroughout);
}

let checked = 0;
let invalid = 0;
for (const block of blocks) {
  const direction = block.match(/^direction: (.*)$/m)[1];
  const bytes = fromHex(block.split("hex:\n")[1]);
  if (direction === "client-invalid") {
    // The bytes of a refused frame are still MessagePack, except the malformed ones.
    const error = block.match(/^error: (.*)$/m)[1];
    let decoded;
    try {
      decoded = decode(bytes);
    } catch (err) {
      if (error !== "malformed") failures.push(`${hex(bytes)} (${error}) does not decode: ${err.message}`);
      invalid++;
      continue;
    }
    if (error === "malformed") failures.push(`${hex(bytes)} is malformed but decoded to ${JSON.stringify(decoded)}`);
    else if (hex(encode(decoded)) !== hex(bytes)) failures.push(`${hex(bytes)} re-encodes as ${hex(encode(decoded))}`);
    invalid++;
    continue;
  }
  const json = block.match(/^json: (.*)$/m)[1];
  const value = decode(bytes);
  const decoded = JSON.stringify(value);
  if (decoded !== JSON.stringify(JSON.parse(json))) failures.push(`decode ${json}\n   got ${decoded}`);
  if (!plainThroughout(value)) failures.push(`decode ${json} gave an object without Object.prototype`);
  const encoded = hex(encode(JSON.parse(json)));
  if (encoded !== hex(bytes)) failures.push(`encode ${json}\n   got ${encoded}`);
  if (hex(encode(value)) !== hex(bytes)) failures.push(`re-encode of ${json} differs`);
  checked++;
}
if (checked < 30) failures.push(`only ${checked} examples found`);
if (invalid < 5) failures.push(`only ${invalid} invalid examples found`);

/** Records `what` as failed unless `ok()` is true (a throw is a failure too). */
function check(what, ok) {
  try {
    if (!ok()) failures.push(what);
  } catch (err) {
    failures.push(`${what}: ${err.message}`);
  }
}
function throws(what, f, type) {
  try {
    f();
  } catch (err) {
    if (!(err instanceof type)) failures.push(`${what}: threw ${err} instead of a ${type.name}`);
    return;
  }
  failures.push(`${what}: did not throw`);
}

// Dates are the timestamp extension (type -1), in each of its three sizes, and come back as Dates.
const dates = [
  ["1970-01-01T00:00:00.000Z", "d6ff00000000"],
  ["2021-01-01T00:00:00.000Z", "d6ff5fee6600"],
  ["1970-01-01T00:00:01.500Z", "d7ff7735940000000001"],
  ["1969-12-31T23:59:59.999Z", "c70cff3b8b87c0ffffffffffffffff"],
];
for (const [iso, bytes] of dates) {
  const date = new Date(iso);
  check(`Date ${iso} encodes as ${bytes}, got ${hex(encode(date))}`, () => hex(encode(date)) === bytes);
  const back = decode(Buffer.from(bytes, "hex"));
  check(`${bytes} decodes to ${iso}, got ${back}`, () => back instanceof Date && back.toISOString() === iso);
}
for (const ms of [Date.now(), 0, -1, 1, 999, -62135596800000, 8640000000000000, -8640000000000000, 2 ** 34 * 1000 + 7]) {
  const back = decode(encode({ at: new Date(ms) })).at;
  check(`Date(${ms}) round-trips, got ${back?.getTime?.()}`, () => back instanceof Date && back.getTime() === ms);
}
// A timestamp written elsewhere with nanoseconds keeps its milliseconds.
check("a timestamp with nanoseconds decodes to its millisecond", () => decode(Buffer.from("d7ff" + (123_456_789 * 4).toString(16).padStart(8, "0") + "00000001", "hex"))?.getTime?.() === 1123);
throws("an invalid Date", () => encode(new Date(NaN)), TypeError);

// Nothing encodes silently as {}.
throws("a Set", () => encode(new Set([1, 2])), TypeError);
throws("a Set inside data", () => encode({ type: "emit", data: { seen: new Set(["a"]) } }), TypeError);
throws("a class instance", () => encode(new (class Point { constructor() { this.x = 1; } })()), TypeError);
throws("a RegExp", () => encode(/x/), TypeError);
throws("a WeakMap", () => encode(new WeakMap()), TypeError);
throws("a typed array other than Uint8Array", () => encode(new Int16Array(2)), TypeError);
throws("a function", () => encode({ f() {} }), TypeError);
throws("a symbol", () => encode(Symbol("s")), TypeError);
const cycle = {};
cycle.self = cycle;
throws("a cycle", () => encode(cycle), TypeError);
check("an object without prototype still encodes as a map", () => hex(encode(Object.assign(Object.create(null), { a: 1 }))) === "81a16101");
check("a Map encodes as a map", () => hex(encode(new Map([[1, "a"]]))) === "8101a161");
check("a Uint8Array is binary", () => hex(encode(new Uint8Array([1, 2]))) === "c4020102");
check("an undefined field is left out", () => hex(encode({ a: 1, b: undefined })) === "81a16101");

// Decoded maps are ordinary objects; "__proto__" is a key like any other.
const decoded = decode(encode({ a: { b: 1 } }));
check("a decoded map has Object.prototype", () => Object.getPrototypeOf(decoded) === Object.prototype);
check("a decoded map answers hasOwnProperty", () => decoded.hasOwnProperty("a") && decoded.a.hasOwnProperty("b"));
check("a decoded map prints as one", () => String(decoded) === "[object Object]");
const protoBytes = Buffer.from("81a95f5f70726f746f5f5f81a8706f6c6c75746564c3", "hex"); // {"__proto__":{"polluted":true}}
const proto = decode(protoBytes);
check("a __proto__ key is an own property", () => Object.hasOwn(proto, "__proto__") && proto.__proto__.polluted === true);
check("a __proto__ key does not change the prototype", () => Object.getPrototypeOf(proto) === Object.prototype && proto.polluted === undefined);
check("decoding pollutes nothing", () => ({}).polluted === undefined);
check("a __proto__ key re-encodes", () => hex(encode(proto)) === hex(protoBytes));
check("a map with other keys than strings is a Map", () => decode(encode(new Map([[1, "a"]]))) instanceof Map);

// 64-bit integers: exact numbers while safe, BigInts beyond; nothing wraps.
const ints = [
  [2 ** 32, "cf0000000100000000", 2 ** 32],
  [Number.MAX_SAFE_INTEGER, "cf001fffffffffffff", Number.MAX_SAFE_INTEGER],
  [-(2 ** 40), "d3ffffff0000000000", -(2 ** 40)],
  [2n ** 53n + 1n, "cf0020000000000001", 2n ** 53n + 1n],
  [2n ** 64n - 1n, "cfffffffffffffffff", 2n ** 64n - 1n],
  [-(2n ** 63n), "d38000000000000000", -(2n ** 63n)],
  [5n, "05", 5],
  [-(2n ** 31n), "d280000000", -(2 ** 31)],
];
for (const [value, bytes, back] of ints) {
  check(`${value} encodes as ${bytes}, got ${hex(encode(value))}`, () => hex(encode(value)) === bytes);
  const got = decode(Buffer.from(bytes, "hex"));
  check(`${bytes} decodes to ${back} (${typeof back}), got ${got} (${typeof got})`, () => got === back);
}
check("a small value in 64 bits decodes as a number", () => decode(Buffer.from("cf0000000000000005", "hex")) === 5);
check("an offset past 2^32 stays a number", () => decode(encode({ offset: 2 ** 40 + 3 })).offset === 2 ** 40 + 3);
throws("2^64 does not fit", () => encode(2n ** 64n), RangeError);
throws("-2^63 - 1 does not fit", () => encode(-(2n ** 63n) - 1n), RangeError);
check("a number past 2^53 is a float (it is not exact)", () => hex(encode(2 ** 60)).startsWith("cb"));

// The state mirror applies ops as the server does, with every key as data.
const state = {};
applyOps(state, [
  { op: "set", path: ["grid", "1,2"], value: "red" },
  { op: "set", path: ["n"], value: 1 },
  { op: "delete", path: ["n"] },
  { op: "delete", path: ["missing", "deeper"] },
]);
check(`applyOps gave ${JSON.stringify(state)}`, () => JSON.stringify(state) === '{"grid":{"1,2":"red"}}');
applyOps(state, [
  { op: "set", path: ["__proto__", "polluted"], value: true },
  { op: "set", path: ["toString", "x"], value: 1 },
  { op: "set", path: ["__proto__"], value: 2 },
]);
check("state ops pollute nothing", () => ({}).polluted === undefined && Object.prototype.polluted === undefined);
check(`state ops keep odd keys as data: ${JSON.stringify(state)}`, () => JSON.stringify(state) === '{"grid":{"1,2":"red"},"__proto__":2,"toString":{"x":1}}');
applyOps(state, [{ op: "set", path: ["at"], value: new Date(0) }, { op: "set", path: ["at", "x"], value: 1 }]);
check("a Date in the state is a value, not a map", () => JSON.stringify(state.at) === '{"x":1}');

if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`ok: ${checked} examples, ${invalid} invalid ones, and the codec's edge cases`);
