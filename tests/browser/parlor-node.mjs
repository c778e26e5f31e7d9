// parlor.js and its Yjs provider for the Node scripts of the tests. parlor-yjs.js imports
// yjs' own packages by name, as a bundler resolves them: a copy of both files beside this
// folder's node_modules lets Node resolve them the same way.

import { copyFileSync, mkdirSync } from "node:fs";

const here = new URL(".", import.meta.url);
const copies = new URL("./.web/", here);
mkdirSync(copies, { recursive: true });
for (const file of ["parlor.js", "parlor-yjs.js"]) {
  copyFileSync(new URL(`../../web/${file}`, here), new URL(file, copies));
}
export const { Parlor } = await import(new URL("parlor.js", copies));
export const { ParlorYjsProvider } = await import(new URL("parlor-yjs.js", copies));
