// The browser lobby served at `/`: a live room list, create / join / quick play, and a room
// view with players, chat and a shared paint grid. Everything goes through /parlor.js.

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

function showError(where, err) {
  $(where).textContent = err ? (err.code ? `${err.code}: ${err.message.replace(/^\w+: /, "")}` : String(err.message || err)) : "";
}

function short(id) { return id ? id.slice(0, 8) : "nobody"; }
function nameOf(id) {
  const names = room?.state?.names;
  return (names && typeof names[id] === "string" && names[id]) || short(id);
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
    const flags = `${info.locked ? " 🔒" : ""}${info.password ? " 🔑" : ""}`;
    tr.innerHTML = `<td class="name"></td><td class="mode"></td><td class="count"></td><td></td>`;
    tr.querySelector(".name").textContent = info.room + flags;
    tr.querySelector(".mode").textContent = info.metadata.mode ?? "";
    tr.querySelector(".count").textContent = `${info.members}/${info.max_members}`;
    const button = document.createElement("button");
    button.className = "join";
    button.textContent = room?.name === info.room ? "Here" : "Join";
    button.disabled = room?.name === info.room || info.locked;
    button.onclick = () => {
      const password = info.password ? prompt(`Password for ${info.room}`) ?? "" : undefined;
      enter(() => parlor.join(info.room, password));
    };
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
  enter(() => parlor.join($("join-id").value.trim(), $("join-password").value || undefined));
};

/** Leaves the current room, if any, then runs `joining` and shows the room it resolves to. */
async function enter(joining) {
  showError("lobby-error", null);
  try {
    if (room) await leaveRoom();
    show(await joining());
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
  system(`You joined ${room.name}.`);
  unbind = [
    room.on("event", (e) => {
      if (e.event === "chat" && e.data && typeof e.data.text === "string") {
        chatLine(typeof e.data.name === "string" ? e.data.name : short(e.from), e.data.text);
      }
    }),
    room.on("presence", (p) => {
      const what = {
        joined: "joined.",
        left: `left (${p.reason}).`,
        away: "lost their connection; their seat is held.",
        back: "is back.",
      }[p.status] ?? p.status;
      system(`${nameOf(p.session)} ${what}`);
      renderMembers();
    }),
    room.on("reset", () => { system("Reconnected; the room is as it is now."); renderMembers(); renderGrid(); }),
    room.on("update", () => { renderRoomHead(); renderMembers(); }),
    room.on("state", () => { renderMembers(); renderGrid(); }),
    room.on("left", (frame) => {
      if (frame.reason === "kicked") showError("lobby-error", { message: `You were removed from ${frame.room}.` });
      closeRoom();
    }),
  ];
  // Everyone finds everyone's name in the shared state.
  room.set(["names", parlor.session], nameInput.value).catch((err) => showError("room-error", err));
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

$("leave-btn").onclick = () => leaveRoom().catch((err) => showError("room-error", err));

$("lock-btn").onclick = () => {
  (room.locked ? room.unlock() : room.lock()).catch((err) => showError("room-error", err));
};

function renderRoomHead() {
  const flags = [];
  if (room.private) flags.push("private");
  if (room.locked) flags.push("locked");
  flags.push(`${room.members.length}/${room.maxMembers}`);
  $("room-flags").replaceChildren(...flags.map((f) => Object.assign(document.createElement("span"), { className: "badge", textContent: f })));
  $("owner-controls").hidden = !room.isOwner;
  $("lock-btn").textContent = room.locked ? "Unlock" : "Lock";
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
      kick.onclick = () => room.kick(id).catch((err) => showError("room-error", err));
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
      room?.set(["grid", `${x},${y}`], $("color").value).catch((err) => showError("room-error", err));
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

$("clear-btn").onclick = () => room?.delete(["grid"]).catch((err) => showError("room-error", err));

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
  room.emit("chat", { name: nameInput.value, text }, { echo: true }).catch((err) => showError("room-error", err));
};

nameInput.onchange = () => {
  localStorage.setItem("parlor-name", nameInput.value);
  room?.set(["names", parlor.session], nameInput.value).catch((err) => showError("room-error", err));
};

// ---- connection -------------------------------------------------------------------------------

const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

async function start() {
  try {
    parlor = await Parlor.connect(url);
  } catch (err) {
    setStatus(`cannot connect: ${err.message}`, false);
    return;
  }
  // parlor.js reconnects by itself: resuming the session keeps the room (and `room`), a fresh
  // session loses it (its Room fires "left", which closes the panel).
  const connected = () => {
    setStatus(`connected as ${short(parlor.session)}`, true);
    document.body.dataset.session = parlor.session;
  };
  parlor.on("lobby", renderLobby);
  parlor.on("reconnecting", (r) => setStatus(`connection lost; reconnecting (attempt ${r.attempt})`, false));
  parlor.on("resumed", connected);
  parlor.on("reset", connected);
  parlor.on("close", (e) => setStatus(`disconnected (${e.code}); reload to reconnect`, false));
  connected();
  await parlor.subscribeLobby({});
  document.body.dataset.ready = "true";
}

start();
