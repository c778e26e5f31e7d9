// Checks parlor.js's MessagePack codec against every valid example of protocol/PROTOCOL.md:
// decoding the bytes gives the documented JSON, and encoding the JSON gives the same bytes.
// Run by tests/server/browser.rs: node tests/browser/codec.mjs
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { decode, encode, applyOps } from "../../web/parlor.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const doc = readFileSync(`${root}protocol/PROTOCOL.md`, "utf8");
const blocks = [...doc.matchAll(/```parlor-example\n([\s\S]*?)```/g)].map((m) => m[1]);
let checked = 0;
const failures = [];
for (const block of blocks) {
  const direction = block.match(/^direction: (.*)$/m)[1];
  if (direction === "client-invalid") continue;
  const json = block.match(/^json: (.*)$/m)[1];
  const hex = block.split("hex:\n")[1].trim().split(/\s+/).map((h) => parseInt(h, 16));
  const bytes = Uint8Array.from(hex);
  const decoded = JSON.stringify(decode(bytes));
  if (decoded !== JSON.stringify(JSON.parse(json))) failures.push(`decode ${json}\n   got ${decoded}`);
  const encoded = Buffer.from(encode(JSON.parse(json))).toString("hex");
  if (encoded !== Buffer.from(bytes).toString("hex")) failures.push(`encode ${json}\n   got ${encoded}`);
  checked++;
}

// The state mirror applies ops as the server does.
const state = Object.create(null);
applyOps(state, [
  { op: "set", path: ["grid", "1,2"], value: "red" },
  { op: "set", path: ["n"], value: 1 },
  { op: "delete", path: ["n"] },
  { op: "delete", path: ["missing", "deeper"] },
]);
if (JSON.stringify(state) !== '{"grid":{"1,2":"red"}}') failures.push(`applyOps gave ${JSON.stringify(state)}`);

if (checked < 30) failures.push(`only ${checked} examples found`);
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`ok: ${checked} examples`);
