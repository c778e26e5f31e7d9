// Drives the browser lobby in headless Chromium: two pages create and join the same room, one
// paints a cell and sends a chat line, the other must show both. Then Bob's connection is cut
// without a close frame (his page talks to the server through a TCP relay in this script, which
// resets it): his status line says it is reconnecting, a chat line he sends meanwhile fails in
// plain words, Alice sees him away, paints and chats meanwhile, and once the relay lets him
// through again parlor.js resumes his session: the page shows what he missed, says it is back
// and clears the error. Join lines name the players; a refused request reads in plain words and
// goes away on the next success. Saves screenshots of both pages at desktop width and of Bob's
// at 390 px, where nothing may scroll sideways.
//
// Then the rooms' rules as the lobby shows them, with a third page, Carol's. "Join by id" never
// makes a room: a typo reads "There is no room with that id." and no room appears, in the list
// or in /rooms; a player in a room who mistypes an id keeps his seat. Alice makes a room of two and Carol joins it by id: full, it says "full", not
// "locked", its owner is offered Lock (not Unlock), and Bob's list says Full. Locked by its
// owner, full or not, the room says "locked", the owner's button says Unlock, and the lists
// show the lock. Unlocked, it is open again. A Join clicked in the list just as its room closes
// says so and makes no room of that name. Screenshots: lobby-full-owner.png, lobby-full-list.png,
// lobby-locked-owner.png, lobby-locked-list.png. Run by tests/server/browser.rs:
//
//   node tests/browser/lobby.mjs <base-url> <artifact-dir> <chromium-path>
//
// Exits 0 on success; on failure prints why, saves failure screenshots, and exits 1.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";

const [base, artifacts, executablePath] = process.argv.slice(2);
if (!base || !artifacts || !executablePath) {
  console.error("usage: node lobby.mjs <base-url> <artifact-dir> <chromium-path>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const ROOM = "e2e-room";
const CELL = '#grid .cell[data-x="3"][data-y="4"]';
const RED = "#e4572e";
const BLUE = "#1f77b4";
const CELL_WHILE_AWAY = '#grid .cell[data-x="5"][data-y="6"]';
const TYPO = "e2e-rooom";
const DUO = "duo";
const TIMEOUT = 10_000;

/** The room head of `page`: its badges (after "private", if any) and its owner's lock button. */
async function expectRoomHead(page, badges, lockButton, what) {
  const head = await page.evaluate(() => ({
    badges: [...document.querySelectorAll("#room-flags .badge")].map((b) => b.textContent),
    ownerControls: !document.getElementById("owner-controls").hidden,
    lock: document.getElementById("lock-btn").textContent,
  }));
  if (JSON.stringify(head.badges) !== JSON.stringify(badges) || !head.ownerControls || head.lock !== lockButton) {
    throw new Error(`${what}: expected badges ${JSON.stringify(badges)} and ${lockButton}, got ${JSON.stringify(head)}`);
  }
}

/** The row of DUO in the room list of `page`: the badges beside its name, and its button. */
async function expectRow(page, want, what) {
  const row = await page.evaluate((room) => {
    const tr = document.querySelector(`#room-list tr[data-room="${room}"]`);
    const button = tr?.querySelector("button.join");
    return tr && {
      badges: [...tr.querySelectorAll(".name .badge")].map((b) => b.textContent),
      button: button.textContent,
      disabled: button.disabled,
      title: button.title,
    };
  }, DUO);
  if (JSON.stringify(row) !== JSON.stringify(want)) {
    throw new Error(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(row)}`);
  }
}

/**
 * A TCP relay to the server that can cut every connection through it with a reset (what a
 * lost network looks like to both ends) and refuse new ones until it is opened again.
 */
async function startRelay(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let open = true;
  const server = createServer((client) => {
    if (!open) {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: hostname, port: Number(port) });
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.on("error", () => b.destroy());
      a.on("close", () => { sockets.delete(a); b.destroy(); });
      a.pipe(b);
    }
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    cut() {
      open = false;
      for (const socket of sockets) socket.resetAndDestroy();
    },
    reopen() { open = true; },
    close() { server.close(); for (const socket of sockets) socket.destroy(); },
  };
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Running as root in CI containers needs the sandbox off.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let alice, bob, carol;
const relay = await startRelay(base);
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  alice = await context.newPage();
  // A second context: its own localStorage, as a second person's browser would have.
  bob = await (await browser.newContext({ viewport: { width: 1280, height: 820 } })).newPage();
  for (const [who, page, url] of [["alice", alice, base], ["bob", bob, relay.url]]) {
    page.on("pageerror", (err) => console.error(`${who} page error: ${err.message}`));
    page.on("console", (msg) => { if (msg.type() === "error") console.error(`${who} console: ${msg.text()}`); });
    await page.goto(url, { waitUntil: "load" });
    await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
    if (await page.isVisible("#sign-in")) throw new Error(`${who}'s page offers a token field on a server without auth`);
    await page.fill("#name", who);
    await page.dispatchEvent("#name", "change");
  }

  // Alice creates the room; Bob sees it appear in his live list. Creating it too fails in plain
  // words; joining it from the list works and clears the error.
  await alice.fill("#create-name", ROOM);
  await alice.fill("#create-max", "4");
  await alice.click("#create-btn");
  await alice.waitForSelector(`#room-title:text-is("${ROOM}")`, { timeout: TIMEOUT });
  await bob.waitForSelector(`#room-list tr[data-room="${ROOM}"]`, { timeout: TIMEOUT });
  await bob.fill("#create-name", ROOM);
  await bob.click("#create-btn");
  await bob.waitForSelector('#lobby-error:text-is("A room with that name already exists.")', { timeout: TIMEOUT });
  await bob.click(`#room-list tr[data-room="${ROOM}"] button.join`, { timeout: TIMEOUT });
  await bob.waitForSelector(`#room-title:text-is("${ROOM}")`, { timeout: TIMEOUT });
  await bob.waitForSelector("#lobby-error:empty", { timeout: TIMEOUT });
  // Alice's chat names the player who joined.
  await alice.waitForSelector('#chat-log li.system:text-is("bob joined.")', { timeout: TIMEOUT });

  // Each sees the other in the member list, by name (names travel in the shared state).
  await alice.waitForSelector('#members .member-name:text-is("bob")', { timeout: TIMEOUT });
  await bob.waitForSelector('#members .member-name:text-is("alice")', { timeout: TIMEOUT });

  // Alice paints a cell and says hello.
  await alice.fill("#color", RED);
  await alice.click(CELL);
  await alice.fill("#chat-input", "hello from alice");
  await alice.click("#chat-send");

  // Bob's page shows both.
  await bob.waitForFunction(
    ([selector, rgb]) => getComputedStyle(document.querySelector(selector)).backgroundColor === rgb,
    [CELL, "rgb(228, 87, 46)"],
    { timeout: TIMEOUT },
  );
  await bob.waitForSelector('#chat-log li:has-text("alice: hello from alice")', { timeout: TIMEOUT });

  // Bob's network drops. Alice sees him away; she paints and chats while he is gone.
  const bobSession = await bob.evaluate(() => document.body.dataset.session);
  relay.cut();
  await bob.waitForSelector('#status:has-text("Connection lost. Reconnecting")', { timeout: TIMEOUT });
  await bob.fill("#chat-input", "into the void");
  await bob.click("#chat-send");
  await bob.waitForSelector('#room-error:text-is("You are offline right now. Try again once you are reconnected.")', { timeout: TIMEOUT });
  await alice.waitForSelector(`#members li[data-session="${bobSession}"] .badge.away`, { timeout: TIMEOUT });
  await alice.waitForSelector('#chat-log li.system:text-is("bob lost their connection; their seat is held.")', { timeout: TIMEOUT });
  await alice.fill("#color", BLUE);
  await alice.click(CELL_WHILE_AWAY);
  await alice.fill("#chat-input", "while you were away");
  await alice.click("#chat-send");
  await alice.waitForSelector('#chat-log li:has-text("alice: while you were away")', { timeout: TIMEOUT });

  // The network comes back: Bob's page resumes the same session and catches up.
  relay.reopen();
  await bob.waitForSelector('#chat-log li:has-text("alice: while you were away")', { timeout: 20_000 });
  await bob.waitForFunction(
    ([selector, rgb]) => getComputedStyle(document.querySelector(selector)).backgroundColor === rgb,
    [CELL_WHILE_AWAY, "rgb(31, 119, 180)"],
    { timeout: TIMEOUT },
  );
  const resumedAs = await bob.evaluate(() => document.body.dataset.session);
  if (resumedAs !== bobSession) throw new Error(`bob came back as ${resumedAs}, not ${bobSession}`);
  await bob.waitForSelector('#status:text-is("Back online.")', { timeout: TIMEOUT });
  await bob.waitForSelector('#chat-log li.system:text-is("Back online. Here is what you missed:")', { timeout: TIMEOUT });
  await bob.waitForSelector("#room-error:empty", { timeout: TIMEOUT });
  await alice.waitForSelector(`#members li[data-session="${bobSession}"]:not(:has(.badge.away))`, { timeout: TIMEOUT });
  await alice.waitForSelector('#chat-log li.system:text-is("bob is back.")', { timeout: TIMEOUT });
  const hexLines = await alice.evaluate(() => [...document.querySelectorAll("#chat-log li")]
    .map((li) => li.textContent).filter((text) => /[0-9a-f]{8}/.test(text)));
  if (hexLines.length) throw new Error(`chat lines with hex ids: ${JSON.stringify(hexLines)}`);

  // Desktop width, then a phone's: the page must fit 390 px with nothing scrolling sideways.
  await alice.screenshot({ path: join(artifacts, "lobby-alice.png"), fullPage: true });
  await bob.screenshot({ path: join(artifacts, "lobby-bob.png"), fullPage: true });
  for (const [width, page] of [[1280, alice], [390, bob]]) {
    await page.setViewportSize({ width, height: 844 });
    const overflow = await page.evaluate(() => {
      const wide = [...document.querySelectorAll("body *")]
        .filter((el) => el.getBoundingClientRect().right > innerWidth + 1)
        .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}`);
      return { scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 5) };
    });
    if (overflow.scrollWidth > width || overflow.wide.length) {
      throw new Error(`at ${width} px the page is ${overflow.scrollWidth} px wide: ${overflow.wide.join(", ")}`);
    }
  }
  await bob.screenshot({ path: join(artifacts, "lobby-bob-390.png"), fullPage: true });
  await bob.setViewportSize({ width: 1280, height: 820 });

  // Join by id never makes a room: a typo is refused in words and no room appears.
  carol = await (await browser.newContext({ viewport: { width: 1280, height: 820 } })).newPage();
  carol.on("pageerror", (err) => console.error(`carol page error: ${err.message}`));
  await carol.goto(base, { waitUntil: "load" });
  await carol.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  await carol.fill("#name", "carol");
  await carol.dispatchEvent("#name", "change");
  await carol.fill("#join-id", TYPO);
  await carol.click("#join-by-id");
  await carol.waitForSelector('#lobby-error:text-is("There is no room with that id.")', { timeout: TIMEOUT });
  if (await carol.isVisible("#room-panel")) throw new Error("carol's page shows a room after a join by id of none");
  await alice.waitForTimeout(500); // several lobby intervals: a room made would be listed by now
  for (const [who, page] of [["alice", alice], ["carol", carol]]) {
    if (await page.locator(`#room-list tr[data-room="${TYPO}"]`).count()) throw new Error(`${who}'s lobby lists ${TYPO}`);
  }
  const listed = await (await fetch(new URL(`rooms`, base))).json();
  if (JSON.stringify(listed).includes(TYPO)) throw new Error(`/rooms lists ${TYPO}: ${JSON.stringify(listed)}`);
  // A refused join costs no seat: Bob, in his room, mistypes an id and is still in it.
  const bobRoom = await bob.textContent("#room-title");
  await bob.fill("#join-id", TYPO);
  await bob.click("#join-by-id");
  await bob.waitForSelector('#lobby-error:text-is("There is no room with that id.")', { timeout: TIMEOUT });
  await bob.waitForTimeout(300); // a leave would have landed by now
  if (!(await bob.isVisible("#room-panel")) || (await bob.textContent("#room-title")) !== bobRoom) {
    throw new Error(`bob lost his room (${bobRoom}) to a mistyped id`);
  }

  // A full room is shown as full, not as locked, and its owner is offered Lock, not Unlock.
  // Alice makes a room of two; Carol joins it by id (an existing room: that works) and fills it.
  await alice.fill("#create-name", DUO);
  await alice.fill("#create-max", "2");
  await alice.click("#create-btn");
  await alice.waitForSelector(`#room-title:text-is("${DUO}")`, { timeout: TIMEOUT });
  await carol.fill("#join-id", DUO);
  await carol.click("#join-by-id");
  await carol.waitForSelector(`#room-title:text-is("${DUO}")`, { timeout: TIMEOUT });
  await carol.waitForSelector("#lobby-error:empty", { timeout: TIMEOUT });
  const duoRow = `#room-list tr[data-room="${DUO}"]`;
  await alice.waitForSelector('#room-flags .badge:text-is("2/2")', { timeout: TIMEOUT });
  await expectRoomHead(alice, ["full", "2/2"], "Lock", "the owner of a full room");
  await bob.waitForSelector(`${duoRow} .count:text-is("2/2")`, { timeout: TIMEOUT });
  await expectRow(bob, { badges: [], button: "Full", disabled: true, title: "full" }, "a full room in bob's list");
  await alice.screenshot({ path: join(artifacts, "lobby-full-owner.png"), fullPage: true });
  await bob.screenshot({ path: join(artifacts, "lobby-full-list.png"), fullPage: true });

  // Locked by its owner (full or not): the lock shows, and the owner's button says Unlock.
  await alice.click("#lock-btn");
  await alice.waitForSelector('#lock-btn:text-is("Unlock")', { timeout: TIMEOUT });
  await expectRoomHead(alice, ["locked", "2/2"], "Unlock", "the owner of a full room she locked");
  await bob.waitForSelector(`${duoRow} .name .badge:text-is("locked")`, { timeout: TIMEOUT });
  await expectRow(bob, { badges: ["locked"], button: "Join", disabled: true, title: "locked by its owner" }, "a full room locked by its owner");
  await carol.click("#leave-btn");
  await carol.waitForSelector("#room-panel", { state: "hidden", timeout: TIMEOUT });
  await alice.waitForSelector('#room-flags .badge:text-is("1/2")', { timeout: TIMEOUT });
  await expectRoomHead(alice, ["locked", "1/2"], "Unlock", "the owner of a room she locked, not full");
  await carol.waitForSelector(`${duoRow} .count:text-is("1/2")`, { timeout: TIMEOUT });
  await expectRow(carol, { badges: ["locked"], button: "Join", disabled: true, title: "locked by its owner" }, "a room locked by its owner, not full");
  await alice.screenshot({ path: join(artifacts, "lobby-locked-owner.png"), fullPage: true });
  await carol.screenshot({ path: join(artifacts, "lobby-locked-list.png"), fullPage: true });

  // Unlocked, the room is open again; filled again, it is full again, and Lock is offered.
  await alice.click("#lock-btn");
  await alice.waitForSelector('#lock-btn:text-is("Lock")', { timeout: TIMEOUT });
  await carol.waitForSelector(`${duoRow}:not(:has(.badge))`, { timeout: TIMEOUT });
  await expectRow(carol, { badges: [], button: "Join", disabled: false, title: `join ${DUO}` }, "the room unlocked");
  await carol.click(`${duoRow} button.join`);
  await carol.waitForSelector(`#room-title:text-is("${DUO}")`, { timeout: TIMEOUT });
  await alice.waitForSelector('#room-flags .badge:text-is("2/2")', { timeout: TIMEOUT });
  await expectRoomHead(alice, ["full", "2/2"], "Lock", "the owner of a room filled again");

  // A Join clicked in the list just as its room closes does not make a new room of that name.
  await carol.click("#leave-btn");
  await carol.waitForSelector(`${duoRow} button.join:not([disabled])`, { timeout: TIMEOUT });
  await carol.evaluate((row) => { window.staleJoin = document.querySelector(`${row} button.join`); }, duoRow);
  await alice.click("#leave-btn");
  await carol.waitForSelector(duoRow, { state: "detached", timeout: TIMEOUT });
  await carol.evaluate(() => window.staleJoin.click());
  await carol.waitForSelector('#lobby-error:text-is("That room has just closed.")', { timeout: TIMEOUT });
  await carol.waitForTimeout(500); // several lobby intervals: a room made would be listed by now
  if (await carol.locator(duoRow).count()) throw new Error(`a stale Join made a new ${DUO}`);
  if (await carol.isVisible("#room-panel")) throw new Error(`carol's page shows a room after a stale Join`);
  console.log(`ok: screenshots in ${artifacts}`);
} catch (err) {
  console.error(`browser test failed: ${err.message}`);
  for (const [who, page] of [["alice", alice], ["bob", bob], ["carol", carol]]) {
    await page?.screenshot({ path: join(artifacts, `failed-${who}.png`), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
  relay.close();
}
