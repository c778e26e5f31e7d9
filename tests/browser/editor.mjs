// The collaborative editor page (/editor) in headless Chromium: Alice and Bob open the same
// document; each types, each page shows the other's text, and each sees the other's cursor
// (y-codemirror's remote caret with the other's name). Screenshots editor-alice.png and
// editor-bob.png. Run by tests/documents.rs:
//
//   node tests/browser/editor.mjs <base-url> <artifact-dir> <chromium-path>

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, artifacts, executablePath] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const TIMEOUT = 15_000;
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const pages = {};
async function open(who) {
  const page = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
  page.on("pageerror", (err) => console.error(`${who}: ${err.message}`));
  pages[who] = page;
  await page.goto(new URL(`/editor?doc=e2e-notes&user=${who}`, base).href);
  await page.waitForFunction(() => window.shared?.provider.synced, null, { timeout: TIMEOUT });
  return page;
}
const content = (page) => page.evaluate(() => window.shared.text.toString());
try {
  const alice = await open("alice");
  const bob = await open("bob");
  await alice.click(".cm-content");
  await alice.keyboard.type("Hello from Alice. ");
  await bob.waitForFunction(() => window.shared.text.toString().includes("Hello from Alice."), null, { timeout: TIMEOUT });
  await bob.click(".cm-content");
  await bob.keyboard.press("End");
  await bob.keyboard.type("And Bob writes back.");
  await alice.waitForFunction(() => window.shared.text.toString().includes("And Bob writes back."), null, { timeout: TIMEOUT });
  const [a, b] = [await content(alice), await content(bob)];
  if (a !== b) throw new Error(`the pages differ: ${JSON.stringify(a)} / ${JSON.stringify(b)}`);
  // Each shows the other's caret, named.
  for (const [page, other] of [[alice, "bob"], [bob, "alice"]]) {
    await page.waitForFunction(
      (name) => [...document.querySelectorAll(".cm-ySelectionInfo")].some((e) => e.textContent === name),
      other,
      { timeout: TIMEOUT },
    );
  }
  await alice.screenshot({ path: join(artifacts, "editor-alice.png") });
  await bob.screenshot({ path: join(artifacts, "editor-bob.png") });
  console.log(JSON.stringify({ text: a }));
  await browser.close();
} catch (err) {
  console.error(`editor e2e failed: ${err.stack ?? err}`);
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(artifacts, `failed-editor-${who}.png`) }).catch(() => {});
  }
  await browser.close();
  process.exit(1);
}
