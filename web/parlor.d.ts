// Types of parlor.js, written by hand beside it. tests/browser/types.mjs keeps the two in step:
// it compares every export, class member and event here with the module itself, and type-checks
// tests/browser/usage.ts, which uses every one of them, against this file as npm installs it.
// The wire frames are those of protocol/PROTOCOL.md.

// ---- values ------------------------------------------------------------------------------------

/** A decoded MessagePack value (see "VALUES" at the top of parlor.js). */
export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Date
  | Ext
  | Value[]
  | Map<Value, Value>
  | { [key: string]: Value };

/** A MessagePack extension value other than a timestamp: its type number and raw bytes. */
export declare class Ext {
  constructor(type: number, data: Uint8Array);
  type: number;
  data: Uint8Array;
}

/**
 * Encodes a value as MessagePack. Throws a TypeError for what it would lose (a Set, a class
 * instance, another typed array, an invalid Date, a cycle) and a RangeError for a BigInt
 * beyond 64 bits.
 */
export declare function encode(value: unknown): Uint8Array;

/** Decodes exactly one MessagePack value; throws a RangeError on malformed bytes. */
export declare function decode(bytes: ArrayBufferView | ArrayBufferLike): Value;

/** A shared-state document: a map with string keys. */
export type State = { [key: string]: Value };

/** A state operation as the server sends it in patches. */
export type StateOp =
  | { op: "set"; path: string[]; value: Value }
  | { op: "delete"; path: string[] };

/** A state operation to send: `value` is anything `encode` takes. */
export type StateOpInput =
  | { op: "set"; path: readonly string[]; value: unknown }
  | { op: "delete"; path: readonly string[] };

/** Applies operations to a state document in place, as the server does. */
export declare function applyOps(state: State, ops: readonly StateOpInput[]): void;

// ---- frames ------------------------------------------------------------------------------------

/** Why a member left a room (PROTOCOL.md section 11); `lost` is the client's own (see reset). */
export type LeaveReason =
  | "leave"
  | "closed"
  | "dropped"
  | "timeout"
  | "slow_consumer"
  | "protocol_error"
  | "kicked"
  | "rate_limited"
  | "node_lost"
  | "ended"
  | "lost";

/** The server's error codes (PROTOCOL.md section 10) and the client's own. */
export type ErrorCode =
  | "text_frame"
  | "malformed"
  | "not_a_map"
  | "too_deep"
  | "unknown_type"
  | "invalid_field"
  | "invalid_room"
  | "invalid_event"
  | "not_in_room"
  | "already_joined"
  | "too_many_rooms"
  | "room_full"
  | "unknown_session"
  | "overloaded"
  | "room_exists"
  | "room_not_found"
  | "room_locked"
  | "wrong_password"
  | "not_owner"
  | "version_conflict"
  | "state_too_large"
  | "invalid_path"
  | "invalid_options"
  | "room_limit"
  | "resume_failed"
  | "rate_limited"
  | "forbidden"
  | "unavailable"
  | "outcome_unknown"
  | "unknown_room_type"
  | "room_refused"
  | "logic_only"
  // the client's own
  | "disconnected"
  | "closed"
  | "timeout"
  | "connect_failed";

export interface Limits {
  max_frame_bytes: number;
  max_rooms_per_session: number;
  max_members_per_room: number;
  max_room_name_bytes: number;
  max_event_name_bytes: number;
  max_depth: number;
  outbound_budget_bytes: number;
  max_state_bytes: number;
  max_metadata_bytes: number;
  frames_per_second: number;
  bytes_per_second: number;
}

export interface WelcomeFrame {
  type: "welcome";
  session: string;
  protocol: number;
  heartbeat_ms: number;
  timeout_ms: number;
  limits: Limits;
  resume_token: string;
  reconnect_grace_ms: number;
  user?: string;
}

export interface JoinedFrame {
  type: "joined";
  ref: number | null;
  room: string;
  /** A room with logic's type (absent for a plain room). */
  room_type?: string;
  members: string[];
  /** `null` while only readers (the read-only claim) are in the room. */
  owner: string | null;
  max_members: number;
  /** Closed to newcomers: full, or locked by the owner. */
  locked: boolean;
  /** Locked by the owner, full or not. */
  locked_by_owner: boolean;
  private: boolean;
  metadata: { [key: string]: Value };
  state: State;
  version: number;
  epoch: string;
  offset: number;
  users?: { [session: string]: string };
  away?: string[];
}

export interface LeftFrame {
  type: "left";
  room: string;
  reason: LeaveReason;
}

export interface PresenceFrame {
  type: "presence";
  room: string;
  session: string;
  status: "joined" | "left" | "away" | "back";
  reason?: LeaveReason;
  user?: string;
  offset: number;
}

export interface EventFrame {
  type: "event";
  room: string;
  from: string;
  event: string;
  data: Value;
  offset: number;
}

export interface DirectFrame {
  type: "direct";
  from: string;
  event: string;
  data: Value;
}

/** A member's own view of a room with logic (PROTOCOL.md section 7). */
export interface ViewFrame {
  type: "view";
  room: string;
  data: Value;
}

export interface RoomUpdateFrame {
  type: "room_update";
  room: string;
  owner: string | null;
  locked: boolean;
  locked_by_owner: boolean;
  metadata: { [key: string]: Value };
  offset: number;
}

/** One applied state update: the version after it, who made it, and its operations. */
export interface StatePatch {
  version: number;
  author: string;
  ops: StateOp[];
}

/** A public room as listings and the lobby show it. */
export interface RoomInfo {
  room: string;
  members: number;
  max_members: number;
  /** Closed to newcomers: full, or locked by the owner. */
  locked: boolean;
  /** Locked by the owner, full or not (a room only full is `locked` alone). */
  locked_by_owner: boolean;
  password: boolean;
  owner: string | null;
  metadata: { [key: string]: Value };
  /** A room with logic's type (absent for a plain room). */
  room_type?: string;
}

/** Which rooms qualify for listings, the lobby and matchmaking (PROTOCOL.md section 4). */
export interface RoomFilter {
  mode?: string;
  metadata?: { [key: string]: unknown };
  free_seats?: boolean;
  /** Only rooms of this type (a room with logic, PROTOCOL.md section 4). */
  room_type?: string;
}

/** The rules of a room made by `create` or `joinOrCreate`. */
export interface RoomOptions {
  max_members?: number;
  private?: boolean;
  password?: string;
  metadata?: { [key: string]: unknown };
  dispose_when_empty?: boolean;
  /** A room with logic: a room type the server runs. */
  room_type?: string;
  /** What that type's logic is made from. */
  type_options?: unknown;
}

/** Where this client is in a room's history, as `resume` takes it. */
export interface RoomPosition {
  room: string;
  epoch: string;
  offset: number;
}

// ---- events ------------------------------------------------------------------------------------

/** Base of Parlor and Room: handlers by event name. */
export declare class Emitter<Events> {
  /** Calls `handler` for every `type` emitted; returns a function that unsubscribes it. */
  on<K extends keyof Events>(type: K, handler: (value: Events[K]) => void): () => void;
  /** Calls `handler` for the next `type` only; returns a function that unsubscribes it. */
  once<K extends keyof Events>(type: K, handler: (value: Events[K]) => void): () => void;
  /** Unsubscribes `handler` (added with `on` or `once`). */
  off<K extends keyof Events>(type: K, handler: (value: Events[K]) => void): void;
}

/** "reconnecting": the connection is down; attempt `attempt` starts in `delay` ms. */
export interface ReconnectingEvent {
  attempt: number;
  delay: number;
  /** The close code of the connection that ended (or null). */
  code: number | null;
  reason: string;
}

/** "resumed": the session is back, with its rooms. */
export interface ResumedEvent {
  session: string;
  /** Rooms whose missed frames are replayed (as ordinary room events). */
  recovered: string[];
  /** Rooms reset from a snapshot (each fires "reset"). */
  snapshot: string[];
  /** Rooms the session is no longer in (each fires "left", reason "lost"). */
  lost: string[];
}

/** "reset": the session could not be resumed; a fresh one replaced it. */
export interface ResetEvent {
  session: string;
  previous: string | null;
  /** Every room the previous session was in (each fired "left", reason "lost"). */
  lost: string[];
  /** The resume's refusal (`resume_failed`), or null when none was tried. */
  error: ParlorError | null;
}

/** "close": the client is closed for good. */
export interface CloseEvent {
  code: number;
  reason: string;
  /** What ended it, when it gave up reconnecting. */
  error: ParlorError | null;
}

export interface ParlorEvents {
  event: EventFrame;
  presence: PresenceFrame;
  direct: DirectFrame;
  lobby: Map<string, RoomInfo>;
  left: LeftFrame;
  error: ParlorError;
  reconnecting: ReconnectingEvent;
  resumed: ResumedEvent;
  reset: ResetEvent;
  close: CloseEvent;
}

export interface RoomEvents {
  event: EventFrame;
  presence: PresenceFrame;
  update: RoomUpdateFrame;
  state: StatePatch;
  /** The member's own view of a room with logic changed (the new view). */
  view: Value;
  reset: JoinedFrame;
  left: LeftFrame;
}

// ---- client ------------------------------------------------------------------------------------

/** A failed request or connection; `code` is the server's error code or the client's own. */
export declare class ParlorError extends Error {
  constructor(
    code: string,
    message: string,
    details?: { ref?: number | null; closeCode?: number | null; reason?: string | null },
  );
  code: ErrorCode | (string & {});
  /** With `room_refused`: the game's own code (`"not_your_turn"`). */
  reason: string | null;
  /** The failed request's `ref`, when the server answered it. */
  ref: number | null;
  /** The WebSocket close code, for `disconnected`, `closed` and `connect_failed`. */
  closeCode: number | null;
}

/** Per request (the last argument of every request method). */
export interface RequestOptions {
  /** Reject with `timeout` after this long; the request's outcome is then unknown. */
  timeoutMs?: number;
  /** Made while reconnecting: send it once the session is back instead of rejecting it. */
  waitForReconnect?: boolean;
}

export interface JoinOptions extends RequestOptions {
  /** False: join only a room that exists (else `room_not_found`); for "join by id". */
  create?: boolean;
}

export interface EmitOptions extends RequestOptions {
  /** Also deliver the event to this client. */
  echo?: boolean;
}

export interface StateRequestOptions extends RequestOptions {
  /** Apply only if the state is still at this version (compare-and-set). */
  ifVersion?: number;
}

export interface ReconnectOptions {
  /** The first attempt's ceiling; each next one doubles it (default 500). */
  minDelayMs?: number;
  /** The ceiling's ceiling (default 10000). */
  maxDelayMs?: number;
  /** Failed attempts before the client closes for good (default Infinity). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** A JWT, or a function giving one (called before every connection). */
  token?: string | (() => string | Promise<string>);
  /** false: no reconnecting. Default: on, with the defaults of ReconnectOptions. */
  reconnect?: false | true | ReconnectOptions;
  /** The default of RequestOptions.waitForReconnect (false). */
  waitForReconnect?: boolean;
  /** The default of RequestOptions.timeoutMs (none). */
  timeoutMs?: number;
  /** How long a connection may take to be welcomed (default 10000). */
  connectTimeoutMs?: number;
  /** The WebSocket class (default globalThis.WebSocket). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

/** A room this session is in, kept up to date by the server's frames. */
export declare class Room extends Emitter<RoomEvents> {
  private constructor();
  client: Parlor;
  name: string;
  /** Session ids, oldest member first. */
  members: string[];
  /** Members whose connection dropped; their seats are held. */
  away: Set<string>;
  /** Session id -> user id, for authenticated members. */
  users: { [session: string]: string };
  owner: string | null;
  maxMembers: number;
  /** Closed to newcomers: full, or locked by the owner. */
  locked: boolean;
  /** Locked by the owner, full or not: what `unlock` undoes. */
  lockedByOwner: boolean;
  private: boolean;
  metadata: { [key: string]: Value };
  /** A mirror of the room's shared state. */
  state: State;
  version: number;
  epoch: string;
  /** The offset of the next frame this client expects. */
  next: number;
  /** In a room with logic: what this member alone may see, as the logic last set it. */
  view: Value | null;
  /** A room with logic's type; null for a plain room. */
  roomType: string | null;
  readonly position: RoomPosition;
  readonly isOwner: boolean;
  /** Resolves with the room's logic's answer, if it gave one (a room with logic), else
   *  `undefined`. */
  emit(event: string, data?: unknown, options?: EmitOptions): Promise<Value | undefined>;
  leave(options?: RequestOptions): Promise<void>;
  lock(options?: RequestOptions): Promise<void>;
  unlock(options?: RequestOptions): Promise<void>;
  kick(session: string, options?: RequestOptions): Promise<void>;
  setMetadata(metadata: { [key: string]: unknown }, options?: RequestOptions): Promise<void>;
  update(ops: readonly StateOpInput[], ifVersion?: number | StateRequestOptions): Promise<void>;
  set(path: readonly string[], value: unknown, ifVersion?: number | StateRequestOptions): Promise<void>;
  delete(path: readonly string[], ifVersion?: number | StateRequestOptions): Promise<void>;
}

/** One client of Parlor: a session, kept across connections. */
export declare class Parlor extends Emitter<ParlorEvents> {
  /** Opens a connection; resolves once welcomed, rejects with `connect_failed`. */
  static connect(url: string, options?: ConnectOptions): Promise<Parlor>;
  private constructor();
  url: string;
  state: "connecting" | "open" | "reconnecting" | "closed";
  session: string;
  /** The authenticated user id, when the server checks tokens. */
  user: string | null;
  /** The current connection's welcome; after a resume, with the resumed session and token. */
  welcome: WelcomeFrame;
  /** The secret that takes this session back after a drop. */
  resumeToken: string;
  rooms: Map<string, Room>;
  /** Room name -> info while subscribed to the lobby. */
  lobby: Map<string, RoomInfo> | null;
  /** Sends any request frame (a `ref` is added); resolves with its answer. */
  request<T = unknown>(frame: { type: string; [field: string]: unknown }, options?: RequestOptions): Promise<T>;
  join(room: string, password?: string | null, options?: JoinOptions): Promise<Room>;
  create(options?: RoomOptions, room?: string, requestOptions?: RequestOptions): Promise<Room>;
  joinOrCreate(filter?: RoomFilter, options?: RoomOptions, requestOptions?: RequestOptions): Promise<Room>;
  listRooms(filter?: RoomFilter, limit?: number, options?: RequestOptions): Promise<RoomInfo[]>;
  subscribeLobby(filter?: RoomFilter, options?: RequestOptions): Promise<Map<string, RoomInfo>>;
  unsubscribeLobby(options?: RequestOptions): Promise<void>;
  send(to: string, event: string, data?: unknown, options?: RequestOptions): Promise<void>;
  /** Reconnects now; resolves once open again, rejects if the client closes first. */
  reconnect(): Promise<void>;
  /** Closes the connection for good (the session leaves its rooms). */
  close(): void;
}
