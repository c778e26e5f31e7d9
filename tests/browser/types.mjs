// Keeps web/parlor.d.ts in step with web/parlor.js, and checks the package installs:
//
// 1. `npm install --install-links <repository>` into a scratch directory, as `npm install <git
//    url>` would (the package is packed by its package.json `files`): node_modules/parlor must
//    hold parlor.js and parlor.d.ts, and `import("parlor")` must give the module.
// 2. `tsc --noEmit --strict` over tests/browser/usage.ts there, importing "parlor".
// 3. The declarations against the module itself: the same exports, the same members of each
//    class (methods, getters, statics, and the properties of live instances), and the same
//    events (the names parlor.js fires, against ParlorEvents and RoomEvents).
// 4. usage.ts uses every one of those members and events.
//
// Run by tests/server/browser.rs: node tests/browser/types.mjs
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const root = fileURLToPath(new URL("../../", import.meta.url));
const here = fileURLToPath(new URL(".", import.meta.url));
const failures = [];

// ---- 1. install, as a user would ---------------------------------------------------------------

const scratch = mkdtempSync(join(tmpdir(), "parlor-types-"));
let installed;
try {
  writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "usage", private: true, type: "module" }));
  execFileSync("npm", ["install", "--install-links", "--offline", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error", root],
    { cwd: scratch, stdio: "pipe" });
  const pkg = join(scratch, "node_modules/parlor");
  for (const file of ["web/parlor.js", "web/parlor.d.ts"]) {
    let copy = null;
    try { copy = readFileSync(join(pkg, file), "utf8"); } catch { failures.push(`the package has no ${file}`); }
    if (copy !== null && copy !== readFileSync(join(root, file), "utf8")) failures.push(`the installed ${file} differs`);
  }
  installed = await import(pathToFileURL(join(pkg, "web/parlor.js")).href);

  // ---- 2. tsc over the usage program -----------------------------------------------------------
  copyFileSync(join(here, "usage.ts"), join(scratch, "usage.ts"));
  try {
    execFileSync(process.execPath, [
      join(here, "node_modules/typescript/bin/tsc"), "--noEmit", "--strict", "--target", "es2022",
      "--module", "nodenext", "--moduleResolution", "nodenext", "--lib", "es2022,dom", "usage.ts",
    ], { cwd: scratch, stdio: "pipe" });
  } catch (err) {
    failures.push(`tsc --noEmit usage.ts failed:\n${err.stdout}${err.stderr}`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

// ---- 3. the declarations against the module ----------------------------------------------------

const dts = ts.createSourceFile("parlor.d.ts", readFileSync(join(root, "web/parlor.d.ts"), "utf8"), ts.ScriptTarget.Latest, true);
const has = (node, kind) => ts.getModifiers?.(node)?.some((m) => m.kind === kind) ?? false;
const declaredValues = new Set();
const declaredClasses = new Map(); // name -> { instance: Set, statics: Set }
const declaredEvents = new Map();  // interface name -> Set of event names
for (const statement of dts.statements) {
  if (!has(statement, ts.SyntaxKind.ExportKeyword)) continue;
  if (ts.isFunctionDeclaration(statement)) declaredValues.add(statement.name.text);
  if (ts.isClassDeclaration(statement)) {
    declaredValues.add(statement.name.text);
    const members = { instance: new Set(), statics: new Set() };
    for (const member of statement.members) {
      if (!member.name || has(member, ts.SyntaxKind.PrivateKeyword)) continue;
      (has(member, ts.SyntaxKind.StaticKeyword) ? members.statics : members.instance).add(member.name.text);
    }
    declaredClasses.set(statement.name.text, members);
  }
  if (ts.isInterfaceDeclaration(statement) && statement.name.text.endsWith("Events")) {
    declaredEvents.set(statement.name.text, new Set(statement.members.map((m) => m.name.text)));
  }
}

function compare(what, declared, actual) {
  for (const name of actual) if (!declared.has(name)) failures.push(`${what}: ${name} is in parlor.js but not in parlor.d.ts`);
  for (const name of declared) if (!actual.has(name)) failures.push(`${what}: ${name} is in parlor.d.ts but not in parlor.js`);
}

const module = installed ?? await import(pathToFileURL(join(root, "web/parlor.js")).href);
compare("exports", declaredValues, new Set(Object.keys(module)));

/** Own methods and getters of a class's prototype chain up to (not including) `stop`. */
function protoMembers(cls, stop) {
  const names = new Set();
  for (let proto = cls.prototype; proto && proto !== stop; proto = Object.getPrototypeOf(proto)) {
    if (proto === Error.prototype || proto === Object.prototype) break;
    for (const name of Object.getOwnPropertyNames(proto)) if (name !== "constructor") names.add(name);
  }
  return names;
}

function staticMembers(cls) {
  return new Set(Object.getOwnPropertyNames(cls).filter((n) => !["length", "name", "prototype"].includes(n)));
}

// Live instances, for the properties their constructors set.
class QuietSocket {
  constructor() {
    this.listeners = [];
    setTimeout(() => this.listeners.filter(([t]) => t === "message").forEach(([, f]) => f({
      data: module.encode({ type: "welcome", session: "s", protocol: 1, heartbeat_ms: 1, timeout_ms: 1, limits: {}, resume_token: "t", reconnect_grace_ms: 0 }).buffer,
    })), 1);
  }
  addEventListener(type, handler) { this.listeners.push([type, handler]); }
  send() {}
  close() {}
}
const parlor = await module.Parlor.connect("ws://x/ws", { WebSocket: QuietSocket, reconnect: false });
const room = new module.Room(parlor, {
  room: "r", members: [], owner: null, max_members: 1, locked: false, private: false, metadata: {}, state: {}, version: 0, epoch: "e", offset: 0,
});
parlor.close();
const instances = {
  Parlor: parlor,
  Room: room,
  Emitter: new module.Emitter(),
  ParlorError: new module.ParlorError("timeout", "m"),
  Ext: new module.Ext(1, new Uint8Array()),
};
const inherited = { Parlor: module.Emitter.prototype, Room: module.Emitter.prototype };
const errorFields = new Set(["message", "stack", "name", "cause"]);
for (const [name, cls] of Object.entries(module)) {
  if (typeof cls !== "function" || !/^[A-Z]/.test(name)) continue;
  const declared = declaredClasses.get(name);
  if (!declared) continue;
  const actual = protoMembers(cls, inherited[name]);
  for (const key of Object.keys(instances[name])) actual.add(key);
  // An Error's own name, message and stack are Error's, declared by lib.d.ts.
  if (name === "ParlorError") for (const key of errorFields) actual.delete(key);
  compare(`class ${name}`, declared.instance, actual);
  compare(`static ${name}`, declared.statics, staticMembers(cls));
}

// Events: every fire(this, "…") in the Parlor class is a Parlor event, every other a Room's.
const source = readFileSync(join(root, "web/parlor.js"), "utf8");
const parlorClass = source.slice(source.indexOf("export class Parlor"));
const fired = { ParlorEvents: new Set(), RoomEvents: new Set() };
for (const [, target, event] of source.matchAll(/fire\((\w+), "(\w+)"/g)) {
  if (target !== "emitter") fired[target === "this" ? "ParlorEvents" : "RoomEvents"].add(event);
}
if (!parlorClass.includes('fire(this, "close"')) failures.push("the event scan found no Parlor events");
compare("ParlorEvents", declaredEvents.get("ParlorEvents") ?? new Set(), fired.ParlorEvents);
compare("RoomEvents", declaredEvents.get("RoomEvents") ?? new Set(), fired.RoomEvents);

// ---- 4. the usage program uses all of it --------------------------------------------------------

const usage = readFileSync(join(here, "usage.ts"), "utf8");
const uses = (pattern) => new RegExp(pattern).test(usage);
for (const name of declaredValues) if (!uses(`\\b${name}\\b`)) failures.push(`usage.ts does not use the export ${name}`);
for (const [cls, variable] of [["Parlor", "parlor"], ["Room", "room"], ["ParlorError", "err"], ["Ext", "ext"]]) {
  for (const member of declaredClasses.get(cls)?.instance ?? []) {
    if (!uses(`\\b${variable}\\.${member}\\b`)) failures.push(`usage.ts does not use ${variable}.${member}`);
  }
  for (const member of declaredClasses.get(cls)?.statics ?? []) {
    if (!uses(`\\b${cls}\\.${member}\\(`)) failures.push(`usage.ts does not call ${cls}.${member}`);
  }
}
for (const [events, variable] of [["ParlorEvents", "parlor"], ["RoomEvents", "room"]]) {
  for (const event of declaredEvents.get(events) ?? []) {
    if (!uses(`\\b${variable}\\.on\\("${event}"`)) failures.push(`usage.ts does not listen to ${variable} "${event}"`);
  }
  for (const method of ["once", "off"]) {
    if (!uses(`\\b${variable}\\.${method}\\(`)) failures.push(`usage.ts does not call ${variable}.${method}`);
  }
}

if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`ok: the package installs, usage.ts type-checks, and parlor.d.ts matches parlor.js (${declaredValues.size} exports)`);
