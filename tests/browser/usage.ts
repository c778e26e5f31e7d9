// A TypeScript program that uses every public call, property and event of parlor.js, against
// its types as `npm install` puts them in node_modules/parlor. It is type-checked, never run:
// tests/browser/types.mjs runs `tsc --noEmit --strict` over it, and also checks that it names
// every member and event the module has. The @ts-expect-error lines must stay errors: they
// prove the types are not `any`.
import {
  applyOps,
  decode,
  encode,
  Emitter,
  Ext,
  Parlor,
  ParlorError,
  Room,
  type CloseEvent,
  type ConnectOptions,
  type DirectFrame,
  type ErrorCode,
  type EventFrame,
  type JoinedFrame,
  type LeftFrame,
  type PresenceFrame,
  type ReconnectingEvent,
  type ResetEvent,
  type ResumedEvent,
  type RoomInfo,
  type RoomPosition,
  type RoomUpdateFrame,
  type State,
  type StatePatch,
  type Value,
  type WelcomeFrame,
} from "parlor";

export async function everything(url: string, jwt: string): Promise<void> {
  // ---- connecting
  const options: ConnectOptions = {
    token: jwt,
    reconnect: { minDelayMs: 250, maxDelayMs: 5_000, maxAttempts: 20 },
    waitForReconnect: false,
    timeoutMs: 10_000,
    connectTimeoutMs: 5_000,
    WebSocket: globalThis.WebSocket,
  };
  const parlor: Parlor = await Parlor.connect(url, options);
  await Parlor.connect(url, { token: async () => jwt, reconnect: false });
  await Parlor.connect(url, { token: () => jwt, reconnect: true });
  await Parlor.connect(url);
  // @ts-expect-error: reconnect is false, true or ReconnectOptions
  await Parlor.connect(url, { reconnect: "yes" });
  // @ts-expect-error: the constructor is private: use Parlor.connect
  new Parlor();

  // ---- the client's state
  const where: string = parlor.url;
  const state: "connecting" | "open" | "reconnecting" | "closed" = parlor.state;
  const session: string = parlor.session;
  const user: string | null = parlor.user;
  const welcome: WelcomeFrame = parlor.welcome;
  const grace: number = welcome.reconnect_grace_ms + welcome.limits.max_frame_bytes;
  const token: string = parlor.resumeToken;
  const rooms: Map<string, Room> = parlor.rooms;
  const lobby: Map<string, RoomInfo> | null = parlor.lobby;
  void [where, state, session, user, grace, token, rooms, lobby];

  // ---- requests
  const quick = { timeoutMs: 2_000, waitForReconnect: true };
  const room: Room = await parlor.join("lobby");
  await parlor.join("vault", "open sesame", quick);
  await parlor.join("a1b2c3", null, { create: false, timeoutMs: 1_000 });
  await parlor.create({ max_members: 4, private: true, password: "pw", metadata: { mode: "duel" }, dispose_when_empty: false }, "arena", quick);
  await parlor.create();
  await parlor.joinOrCreate({ mode: "duel", free_seats: true, metadata: { map: "dust" } }, { max_members: 2 }, quick);
  const listed: RoomInfo[] = await parlor.listRooms({ mode: "duel" }, 20, quick);
  const watched: Map<string, RoomInfo> = await parlor.subscribeLobby({ free_seats: true }, quick);
  await parlor.unsubscribeLobby(quick);
  await parlor.send(room.members[0], "hi", { text: "psst" }, quick);
  const answer = await parlor.request<{ ok: true }>({ type: "list_rooms", filter: {} }, quick);
  void [listed, watched, answer];
  // @ts-expect-error: a room name is a string
  await parlor.join(42);

  // ---- a room
  const name: string = room.name;
  const members: string[] = room.members;
  const away: Set<string> = room.away;
  const users: { [session: string]: string } = room.users;
  const owner: string | null = room.owner;
  const seats: number = room.maxMembers;
  const locked: boolean = room.locked;
  const lockedByOwner: boolean = room.lockedByOwner;
  const hidden: boolean = room.private;
  const metadata: { [key: string]: Value } = room.metadata;
  const doc: State = room.state;
  const version: number = room.version;
  const epoch: string = room.epoch;
  const next: number = room.next;
  const position: RoomPosition = room.position;
  const mine: boolean = room.isOwner;
  const client: Parlor = room.client;
  void [name, members, away, users, owner, seats, locked, lockedByOwner, hidden, metadata, doc, version, epoch, next, position, mine, client];
  await room.emit("move", { x: 1, at: new Date() }, { echo: true, timeoutMs: 1_000 });
  await room.emit("ping");
  // A room with logic: its answers, and the game's own reasons for a refusal.
  const logicAnswer: Value | undefined = await room.emit("cards_left");
  void logicAnswer;
  const myView: Value | null = room.view;
  const kind: string | null = room.roomType;
  void kind;
  room.on("view", (view: Value) => void view);
  void myView;
  const table: Room = await client.create({ max_members: 2, room_type: "high-card", type_options: { rounds: 3 } }, "table-1");
  void table;
  try {
    await room.emit("play", 3);
  } catch (err) {
    if (err instanceof ParlorError && err.code === "room_refused") {
      const reason: string | null = err.reason;
      void reason;
    }
  }
  await room.lock(quick);
  await room.unlock();
  await room.kick(members[0], quick);
  await room.setMetadata({ mode: "duel" }, quick);
  await room.update([{ op: "set", path: ["a"], value: 1 }, { op: "delete", path: ["b"] }], 7);
  await room.update([{ op: "set", path: ["a"], value: 2n }], { ifVersion: 8, timeoutMs: 500 });
  await room.set(["score", session], 10);
  await room.set(["score", session], 11, { ifVersion: version, waitForReconnect: true });
  await room.delete(["score", session], version);
  await room.delete(["score"], { timeoutMs: 100 });
  await room.leave(quick);
  // @ts-expect-error: an event name is a string
  await room.emit(1);
  // @ts-expect-error: ops are set or delete
  await room.update([{ op: "merge", path: ["a"] }]);

  // ---- the client's events
  const offs: Array<() => void> = [
    parlor.on("event", (e: EventFrame) => console.log(e.room, e.from, e.event, e.data, e.offset)),
    parlor.on("presence", (p: PresenceFrame) => console.log(p.session, p.status, p.reason, p.user)),
    parlor.on("direct", (d: DirectFrame) => console.log(d.from, d.event, d.data)),
    parlor.on("lobby", (l: Map<string, RoomInfo>) => console.log(l.size)),
    parlor.on("left", (l: LeftFrame) => console.log(l.room, l.reason === "lost")),
    parlor.on("error", (e: ParlorError) => console.log(e.code)),
    parlor.on("reconnecting", (r: ReconnectingEvent) => console.log(r.attempt, r.delay, r.code, r.reason)),
    parlor.on("resumed", (r: ResumedEvent) => console.log(r.session, r.recovered, r.snapshot, r.lost)),
    parlor.on("reset", (r: ResetEvent) => console.log(r.session, r.previous, r.lost, r.error?.code)),
    parlor.on("close", (c: CloseEvent) => console.log(c.code, c.reason, c.error)),
  ];
  const onceOnly = (r: ResumedEvent) => console.log(r.lost);
  parlor.once("resumed", onceOnly);
  parlor.off("resumed", onceOnly);
  // @ts-expect-error: no such event
  parlor.on("reconnected", () => {});
  // @ts-expect-error: "reset" carries a ResetEvent
  parlor.on("reset", (r: ResumedEvent) => r.recovered);

  // ---- a room's events
  offs.push(
    room.on("event", (e: EventFrame) => console.log(e.data)),
    room.on("presence", (p: PresenceFrame) => console.log(p.status)),
    room.on("update", (u: RoomUpdateFrame) => console.log(u.owner, u.locked, u.locked_by_owner, u.metadata)),
    room.on("state", (s: StatePatch) => console.log(s.version, s.author, s.ops)),
    room.on("reset", (j: JoinedFrame) => console.log(j.epoch, j.offset, j.state)),
    room.on("left", (l: LeftFrame) => console.log(l.reason)),
  );
  const onceLeft = (l: LeftFrame) => console.log(l.room);
  room.once("left", onceLeft);
  room.off("left", onceLeft);
  for (const off of offs) off();
  // @ts-expect-error: rooms have no "resumed" event
  room.on("resumed", () => {});

  // ---- errors
  try {
    await parlor.join("full-room", null, { timeoutMs: 1 });
  } catch (err) {
    if (err instanceof ParlorError) {
      const code: ErrorCode | (string & {}) = err.code;
      const ref: number | null = err.ref;
      const closeCode: number | null = err.closeCode;
      console.log(code === "timeout", code === "room_full", ref, closeCode, err.message);
    }
  }
  const own = new ParlorError("timeout", "no answer", { ref: 3, closeCode: null });
  void own;

  // ---- reconnecting and closing
  await parlor.reconnect();
  parlor.close();

  // ---- the codec and the state mirror
  const bytes: Uint8Array = encode({ type: "join", ref: 1, room: "lobby", at: new Date(), big: 2n ** 60n });
  const value: Value = decode(bytes);
  decode(bytes.buffer);
  const ext = new Ext(5, new Uint8Array([1, 2]));
  const extType: number = ext.type;
  const extData: Uint8Array = ext.data;
  void [value, extType, extData];
  const mirror: State = {};
  applyOps(mirror, [{ op: "set", path: ["grid", "1,2"], value: "red" }, { op: "delete", path: ["n"] }]);
  // @ts-expect-error: a path is an array of strings
  applyOps(mirror, [{ op: "set", path: "grid", value: 1 }]);

  // Emitter is the base of both, and can be extended.
  class Ticker extends Emitter<{ tick: number }> {}
  const ticker = new Ticker();
  ticker.on("tick", (n: number) => console.log(n + 1));
  const emitters: Emitter<unknown>[] = [];
  void emitters;
}
