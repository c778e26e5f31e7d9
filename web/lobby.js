// The browser lobby served at `/`: a live room list, create / join / quick play, and a room
// view with players, chat and a shared paint grid. Everything goes through /parlor.js, which
// also reconnects by itself; this page only says what is happening, in words.
//
// On a server with [auth], open the page with `?token=<jwt>`, or paste the token into the field
// the page shows when the server refuses it for want of a valid one.

import { Parlor } from "/parlor.js";

const GRID = 12;
const $ = (id) => document.getElementById(id);

const nameInput = $("name");
nameInput.value = localStorage.getItem("parlor-name") || `guest-${Math.random().toString(36).slice(2, 6)}`;

let parlor = null;
let room = null;       // the Room shown in the room panel, if any
let unbind = [];       // handlers to remove when leaving it

function setStatus(text, ok) {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${ok ? "ok" : "down"}`;
}

/** What a player reads for each error code (parlor.js's own codes included). */
const WORDS = {
  room_full: "That room is full.",
  room_locked: "That room is locked by its owner.",
  room_not_found: "There is no room with that id.",
  room_gone: "That room has just closed.",
  wrong_password: "Wrong password for that room.",
  room_exists: "A room with that name already exists.",
  invalid_room: "A room name must be 1 to 128 characters long.",
  invalid_options: "Those room settings are not allowed (check the number of players and the password).",
  too_many_rooms: "You are in too many rooms at once.",
  room_limit: "The server cannot open another room right now.",
  already_joined: "You are already in that room.",
  not_in_room: "You are no longer in that room.",
  not_owner: "Only the room's owner can do that.",
  unknown_session: "That player is no longer here.",
  forbidden: "You are not allowed into that room.",
  rate_limited: "Slow down: that was too much, too fast.",
  overloaded: "The server is busy. Try again in a moment.",
  unavailable: "The server is having trouble. Try again in a moment.",
  state_too_large: "The canvas cannot hold any more.",
  version_conflict: "Someone changed that at the same moment. Try again.",
  disconnected: "You are offline right now. Try again once you are reconnected.",
  closed: "You are disconnected. Reload the page to come back.",
  timeout: "The server did not answer in time; it may or may not have happened.",
  not_connected: "You are not connected to the server: the top of the page says why.",
};

/** Shows `err` in the error line `where` in plain words, or clears it (`err` null). */
function showError(where, err) {
  const line = $(where);
  if (!err) {
    line.textContent = "";
    line.removeAttribute("title");
    delete line.dataset.code;
    return;
  }
  line.textContent = WORDS[err.code] ?? (err.code ? `Something went wrong (${err.code}).` : String(err.message ?? err));
  line.title = err.message ?? ""; // the details, for whoever hovers
  line.dataset.code = err.code ?? "";
}

/** Runs a request: its error goes to the line `where`; its success clears that line. */
function act(where, promise) {
  return promise.then((value) => {
    showError(where, null);
    return value;
  }, (err) => {
    showError(where, err);
  });
}

// Names: the room's shared state maps session ids to the names players chose. A name is
// remembered after it leaves the state, so that "left" lines still say who left.
const knownNames = new Map();
function learnNames() {
  const names = room?.state?.names;
  if (!names || typeof names !== "object") return;
  for (const [id, name] of Object.entries(names)) {
    if (typeof name === "string" && name) knownNames.set(id, name);
  }
}
function hasName(id) {
  learnNames();
  return knownNames.has(id) || Boolean(room?.users?.[id]);
}
function nameOf(id) {
  learnNames();
  return knownNames.get(id) || room?.users?.[id] || `player ${id ? id.slice(0, 4) : "?"}`;
}

// ---- lobby ------------------------------------------------------------------------------------

function renderLobby() {
  const body = $("room-list").querySelector("tbody");
  const wantMode = $("filter-mode").value.trim();
  const freeOnly = $("filter-free").checked;
  const rooms = [...(parlor?.lobby?.values() ?? [])]
    .filter((r) => !wantMode || r.metadata.mode === wantMode)
    .filter((r) => !freeOnly || !r.locked)
    .sort((a, b) => a.room.localeCompare(b.room));
  body.replaceChildren(...rooms.map((info) => {
    const tr = document.createElement("tr");
    tr.dataset.room = info.room;
    const full = info.members >= info.max_members;
    tr.innerHTML = `<td class="name"><span class="room-name"></span></td><td class="mode"></td><td class="count"></td><td></td>`;
    tr.querySelector(".room-name").textContent = info.room;
    // Words in badges, as in the room's head, rather than emoji a browser may lack a font for.
    for (const [flag, text, title] of [
      [info.locked_by_owner, "locked", "locked by its owner"],
      [info.password, "password", "needs a password"],
    ]) {
      if (flag) tr.querySelector(".name").append(" ", Object.assign(document.createElement("span"), { className: "badge", textContent: text, title }));
    }
    tr.querySelector(".mode").textContent = info.metadata.mode ?? "";
    tr.querySelector(".count").textContent = `${info.members}/${info.max_members}`;
    const button = document.createElement("button");
    button.className = "join";
    button.textContent = room?.name === info.room ? "Here" : "Join";
    button.disabled = room?.name === info.room || info.locked;
    button.onclick = () => {
      const password = info.password ? prompt(`Password for ${info.room}`) ?? "" : undefined;
      // The room listed, never a new one of that name: it may have closed since the list said.
      enter(() => parlor.join(info.room, password, { create: false }).catch((err) => {
        if (err.code === "room_not_found") err.code = "room_gone";
        throw err;
      }));
    };
    button.title = info.locked_by_owner ? "locked by its owner" : full ? "full" : `join ${info.room}`;
    if (full && !info.locked_by_owner && room?.name !== info.room) button.textContent = "Full";
    tr.lastChild.append(button);
    return tr;
  }));
  $("no-rooms").hidden = rooms.length > 0;
}

$("filter-mode").oninput = renderLobby;
$("filter-free").onchange = renderLobby;

$("quick-form").onsubmit = (e) => {
  e.preventDefault();
  const mode = $("quick-mode").value.trim();
  const seats = Number($("quick-seats").value) || 4;
  enter(() => parlor.joinOrCreate({ mode, free_seats: true }, { max_members: seats }));
};

$("create-form").onsubmit = (e) => {
  e.preventDefault();
  const options = {
    max_members: Number($("create-max").value) || undefined,
    private: $("create-private").checked,
    metadata: {},
  };
  const mode = $("create-mode").value.trim();
  if (mode) options.metadata.mode = mode;
  const password = $("create-password").value;
  if (password) options.password = password;
  enter(() => parlor.create(options, $("create-name").value.trim() || undefined));
};

$("join-form").onsubmit = (e) => {
  e.preventDefault();
  // Join by id joins a room that exists, never makes one from a typo.
  enter(() => parlor.join($("join-id").value.trim(), $("join-password").value || undefined, { create: false }));
};

/** Leaves the current room, if any, then runs `joining` and shows the room it resolves to. */
async function enter(joining) {
  if (!parlor) {
    showError("lobby-error", { code: "not_connected" });
    return;
  }
  try {
    const previous = room;
    const joined = await joining();
    // The old room is left only once the new one has taken the player, so that a refused
    // join (a typo, a full room) costs no seat.
    if (previous && previous.name !== joined.name) {
      await previous.delete(["names", parlor.session]).catch(() => {});
      await previous.leave().catch(() => {});
    }
    show(joined);
    showError("lobby-error", null);
  } catch (err) {
    showError("lobby-error", err);
  }
}

// ---- room -------------------------------------------------------------------------------------

function show(joined) {
  room = joined;
  $("room-panel").hidden = false;
  $("room-title").textContent = room.name;
  $("room-id").textContent = room.name;
  $("chat-log").replaceChildren();
  showError("room-error", null);
  system(`You joined ${room.name}.`);
  // A joiner writes its name into the state just after joining: its join line waits for it
  // (a moment at most), so that it names the player.
  const waitingJoins = new Map(); // session -> timer
  const sayJoined = (id) => {
    clearTimeout(waitingJoins.get(id));
    waitingJoins.delete(id);
    system(`${nameOf(id)} joined.`);
  };
  unbind = [
    room.on("event", (e) => {
      if (e.event === "chat" && e.data && typeof e.data.text === "string") {
        chatLine(typeof e.data.name === "string" ? e.data.name : nameOf(e.from), e.data.text);
      }
    }),
    room.on("presence", (p) => {
      if (p.status === "joined") {
        if (hasName(p.session)) sayJoined(p.session);
        else waitingJoins.set(p.session, setTimeout(() => sayJoined(p.session), 2000));
      } else {
        if (waitingJoins.has(p.session)) sayJoined(p.session);
        const what = {
          left: { leave: "left.", kicked: "was removed by the owner.", timeout: "lost their connection and left." }[p.reason] ?? "left.",
          away: "lost their connection; their seat is held.",
          back: "is back.",
        }[p.status] ?? p.status;
        system(`${nameOf(p.session)} ${what}`);
      }
      renderMembers();
    }),
    room.on("reset", () => { system("Reconnected. The room is shown as it is now."); renderMembers(); renderGrid(); }),
    room.on("update", () => { renderRoomHead(); renderMembers(); }),
    room.on("state", () => {
      learnNames();
      for (const id of [...waitingJoins.keys()]) if (hasName(id)) sayJoined(id);
      renderMembers();
      renderGrid();
    }),
    room.on("left", (frame) => {
      const why = {
        kicked: `You were removed from ${frame.room}.`,
        lost: `You lost your place in ${frame.room}: you were away too long, or the server restarted.`,
      }[frame.reason];
      if (why) showError("lobby-error", { message: why });
      closeRoom();
    }),
    () => { for (const timer of waitingJoins.values()) clearTimeout(timer); },
  ];
  // Everyone finds everyone's name in the shared state.
  act("room-error", room.set(["names", parlor.session], nameInput.value));
  renderRoomHead();
  renderMembers();
  renderGrid();
  renderLobby();
}

function closeRoom() {
  for (const off of unbind) off();
  unbind = [];
  room = null;
  $("room-panel").hidden = true;
  renderLobby();
}

async function leaveRoom() {
  const leaving = room;
  await leaving.delete(["names", parlor.session]).catch(() => {});
  await leaving.leave();
  if (room === leaving) closeRoom();
}

$("leave-btn").onclick = () => act("room-error", leaveRoom());

$("lock-btn").onclick = () => act("room-error", room.lockedByOwner ? room.unlock() : room.lock());

function renderRoomHead() {
  const flags = [];
  if (room.private) flags.push("private");
  if (room.lockedByOwner) flags.push("locked");
  else if (room.locked) flags.push("full");
  flags.push(`${room.members.length}/${room.maxMembers}`);
  $("room-flags").replaceChildren(...flags.map((f) => Object.assign(document.createElement("span"), { className: "badge", textContent: f })));
  $("owner-controls").hidden = !room.isOwner;
  $("lock-btn").textContent = room.lockedByOwner ? "Unlock" : "Lock";
}

function renderMembers() {
  if (!room) return;
  renderRoomHead();
  $("members").replaceChildren(...room.members.map((id) => {
    const li = document.createElement("li");
    li.dataset.session = id;
    const name = document.createElement("span");
    name.className = "member-name" + (id === parlor.session ? " me" : "");
    name.textContent = nameOf(id);
    li.append(name);
    if (id === room.owner) li.append(Object.assign(document.createElement("span"), { className: "badge", textContent: "owner" }));
    if (id === parlor.session) li.append(Object.assign(document.createElement("span"), { className: "badge", textContent: "you" }));
    if (room.away.has(id)) li.append(Object.assign(document.createElement("span"), { className: "badge away", textContent: "away" }));
    if (room.isOwner && id !== parlor.session) {
      const kick = Object.assign(document.createElement("button"), { textContent: "kick", title: `remove ${nameOf(id)}` });
      kick.onclick = () => act("room-error", room.kick(id));
      li.append(kick);
    }
    return li;
  }));
}

// ---- shared grid ------------------------------------------------------------------------------

const cells = [];
for (let y = 0; y < GRID; y++) {
  for (let x = 0; x < GRID; x++) {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.dataset.x = x;
    cell.dataset.y = y;
    cell.onclick = () => {
      if (room) act("room-error", room.set(["grid", `${x},${y}`], $("color").value));
    };
    cells.push(cell);
  }
}
$("grid").append(...cells);

function renderGrid() {
  const grid = room?.state?.grid ?? {};
  $("state-version").textContent = room?.version ?? 0;
  for (const cell of cells) {
    const colour = grid[`${cell.dataset.x},${cell.dataset.y}`];
    cell.style.background = typeof colour === "string" && /^#[0-9a-f]{6}$/i.test(colour) ? colour : "";
  }
}

$("clear-btn").onclick = () => { if (room) act("room-error", room.delete(["grid"])); };

// ---- chat -------------------------------------------------------------------------------------

function chatLine(who, text) {
  const li = document.createElement("li");
  li.innerHTML = `<span class="who"></span> <span class="text"></span>`;
  li.querySelector(".who").textContent = `${who}:`;
  li.querySelector(".text").textContent = text;
  appendLog(li);
}

function system(text) {
  appendLog(Object.assign(document.createElement("li"), { className: "system", textContent: text }));
}

function appendLog(li) {
  const log = $("chat-log");
  log.append(li);
  while (log.children.length > 200) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
}

$("chat-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || !room) return;
  $("chat-input").value = "";
  act("room-error", room.emit("chat", { name: nameInput.value, text }, { echo: true }));
};

nameInput.onchange = () => {
  localStorage.setItem("parlor-name", nameInput.value);
  if (room) act("room-error", room.set(["names", parlor.session], nameInput.value));
};

// ---- connection -------------------------------------------------------------------------------

const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
/** The sign-in token: from the page's address, or the field once a player enters one. */
let token = new URLSearchParams(location.search).get("token") || undefined;

/** Why the connection closed for good, in words. */
function closedWords({ code, error }) {
  if (error) return "Could not reconnect. Check your network, then reload the page.";
  return {
    4001: "The server disconnected you. Reload the page to come back.",
    4002: "You opened this game in another tab or window, which took over.",
    1008: "Disconnected for sending too much, too fast. Reload the page to come back.",
  }[code] ?? "Disconnected. Reload the page to reconnect.";
}

/**
 * Why the server refused our WebSocket. A browser is not shown the refusal, but the server runs
 * the same checks (connection rate, token, capacity) on a plain GET of /ws and answers them in
 * JSON; past them it answers 400, since that GET is no WebSocket upgrade.
 */
async function whyRefused() {
  let response;
  try {
    response = await fetch(`/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`, { cache: "no-store" });
  } catch {
    return { words: "Cannot reach the server. Check your network, then reload the page." };
  }
  const { error } = await response.json().catch(() => ({}));
  // Refusals a (new) token would cure: the page offers its field for one.
  const tokenWords = {
    token_missing: "This server needs a sign-in token: enter yours below, or open this page with ?token=<your token> in its address.",
    token_expired: "Your sign-in token has expired: get a new one and enter it below.",
    bad_signature: "This server does not accept your sign-in token: enter another one below.",
    wrong_algorithm: "This server does not accept your sign-in token: enter another one below.",
    invalid_token: "Your sign-in token is not valid for this server: enter another one below.",
  }[error];
  if (tokenWords) return { words: tokenWords, needsToken: true };
  return {
    words: {
      origin_not_allowed: "This server does not accept players from this page's address.",
      rate_limited: "Too many connections from your address: wait a moment, then reload the page.",
      too_many_connections: "The server is full: try again later.",
    }[error] ?? (response.ok || response.status === 400
      ? "Cannot connect to the server right now: reload the page to try again."
      : `The server refused the connection (HTTP ${response.status}).`),
  };
}

// A token entered in the field replaces the one the page had, and connects with it.
$("token-form").onsubmit = (e) => {
  e.preventDefault();
  const entered = $("token").value.trim();
  if (!entered || parlor) return;
  token = entered;
  $("token-connect").disabled = true;
  start().finally(() => { $("token-connect").disabled = false; });
};

/** Clears an error line that only said the connection was down. */
function clearConnectionErrors() {
  for (const where of ["lobby-error", "room-error"]) {
    if (["disconnected", "timeout", "not_connected"].includes($(where).dataset.code)) showError(where, null);
  }
}

async function start() {
  setStatus("Connecting…", false);
  document.body.dataset.connection = "connecting";
  try {
    // Every request gives up after 10 s rather than leave a button doing nothing.
    parlor = await Parlor.connect(url, { token, timeoutMs: 10_000 });
  } catch (err) {
    const { words, needsToken } = await whyRefused();
    setStatus(words, false);
    $("sign-in").hidden = !needsToken;
    if (needsToken) $("token").select();
    document.body.dataset.connection = "refused";
    return;
  }
  $("sign-in").hidden = true;
  clearConnectionErrors();
  if (parlor.user && !localStorage.getItem("parlor-name")) nameInput.value = parlor.user;
  const online = (text) => {
    setStatus(text, true);
    document.body.dataset.session = parlor.session;
    document.body.dataset.connection = parlor.state;
  };
  // A degraded server (a cluster node cut off from its Redis) cannot list rooms for a while:
  // parlor.js keeps asking by itself, and the status line says why the list is stale.
  const degraded = "Connected, but the server is having trouble: the room list will come back by itself.";
  parlor.on("lobby", () => {
    if (document.body.dataset.connection === "degraded") online("Connected.");
    renderLobby();
  });
  parlor.on("error", (err) => {
    if (["unavailable", "outcome_unknown", "overloaded"].includes(err.code) && parlor.state === "open") {
      setStatus(degraded, false);
      document.body.dataset.connection = "degraded";
    }
  });
  let checking = false;
  parlor.on("reconnecting", ({ attempt, delay }) => {
    // A token that expired meanwhile would be refused for ever: after a few failed attempts,
    // ask the server why, and offer the sign-in field instead of trying on.
    if (attempt >= 3 && token && !checking) {
      checking = true;
      const client = parlor;
      whyRefused().then(({ words, needsToken }) => {
        checking = false;
        if (!needsToken || client !== parlor || client.state === "open") return;
        parlor = null;
        client.close();
        setStatus(words, false);
        $("sign-in").hidden = false;
        document.body.dataset.connection = "refused";
      });
    }
    const when = delay >= 1000 ? ` in ${Math.round(delay / 1000)} s` : "";
    setStatus(`Connection lost. Reconnecting${when}${attempt > 1 ? ` (attempt ${attempt})` : ""}…`, false);
    document.body.dataset.connection = "reconnecting";
    if (attempt === 1 && room) system("Connection lost. Reconnecting…");
  });
  parlor.on("resumed", ({ recovered, snapshot }) => {
    online("Back online.");
    if (room && recovered.includes(room.name)) system("Back online. Here is what you missed:");
    else if (room && snapshot.includes(room.name)) system("Back online.");
    clearConnectionErrors();
  });
  parlor.on("reset", ({ lost }) => {
    // The room's "left" (reason lost) has closed the panel and said so.
    online(lost.length ? "Back online, in a new session." : "Back online.");
    clearConnectionErrors();
  });
  parlor.on("close", (e) => {
    // Closed because its token no longer passes: the status already says why.
    if (document.body.dataset.connection === "refused") return;
    setStatus(closedWords(e), false);
    document.body.dataset.connection = "closed";
  });
  online("Connected.");
  try {
    await parlor.subscribeLobby({});
  } catch (err) {
    if (["unavailable", "outcome_unknown", "overloaded"].includes(err.code)) {
      setStatus(degraded, false);
      document.body.dataset.connection = "degraded";
    } else {
      showError("lobby-error", err);
    }
  }
  document.body.dataset.ready = "true";
}

start();
