// Bundles main.js (CodeMirror 6, y-codemirror.next, Yjs, parlor.js, parlor-yjs.js, at the
// versions package.json pins) into web/editor.bundle.js, which the server serves at
// /editor.bundle.js: the page loads nothing from elsewhere.
//
//   cd web/editor && npm ci && node build.mjs
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
await build({
  entryPoints: [`${here}/main.js`],
  outfile: `${here}/../editor.bundle.js`,
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  nodePaths: [`${here}/node_modules`],
  legalComments: "eof",
  banner: { js: "// Built by web/editor/build.mjs from pinned npm packages; do not edit." },
});
