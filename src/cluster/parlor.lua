#!lua name=parlor
--[[
Parlor's cluster functions, loaded into Redis with FUNCTION LOAD REPLACE by every node.

Redis is the cluster's single source of truth for rooms and the only place a room's frames are
ordered: every function below runs atomically, so the checks it makes (seats, locks, owner,
state version) and the frames it appends cannot interleave with another node's.

Every function takes its arguments as ARGV only (no KEYS: one Redis, not Redis Cluster):
  a[1] key prefix P, a[2] frames of history kept per room, a[3] the calling node's id,
  then its own arguments.

Keys (P is the prefix, e.g. "parlor:"):
  P.."nodes"         set of registered node ids
  P.."n:"..node      the node's heartbeat, a string that expires after node_ttl
  P.."ns:"..node     set of the node's sessions that are in rooms
  P.."orphans"       zset: sessions whose node shut down, by the end of their grace (ms)
  P.."s:"..sid       hash: node, tok (sha1 of the resume token), user, away (0/1)
  P.."sr:"..sid      set of the session's rooms
  P.."seq"           rooms created so far
  P.."rooms"         zset: every room, by creation order
  P.."open"          zset: public rooms with a free seat, no lock and no password
  P.."open:"..mode   the same, for one metadata mode
  P.."r:"..room      hash: max n hl(locked by hand) own prv pw dsp meta mode ver st off ep cr js
  P.."rm:"..room     hash: member sid -> "<join seq>|<away 0/1>|<user>"
  P.."rk:"..room     hash: metadata key -> its value, MessagePack (for matchmaking filters)
  P.."rl:"..room     stream: the room's frames; entry id 0-<offset+1>, fields f (frame), s (skip)
Channels:
  P.."c:"..room      every frame appended to the room: "<offset>\n<skip sid or empty>\n<frame>"
  P.."i:"..node      a node's inbox: "d\n<sid>\n<frame>" (direct), "r\n<sid>" (resumed elsewhere),
                     "k\n<sid>" (kicked by the backend),
                     "l\n<sid>\n<room>\n<reason>" (removed from one room by its owner)
  P.."lobby"         the name of every room whose listing changed

Frames are MessagePack maps with `offset` last. A frame the node built arrives with offset 0
(its last byte is 0x00); `splice` puts the real offset in its place.
]]

-- cmsgpack is reachable only while a function runs, not while the library loads.
local function mp(v)
  return cmsgpack.pack(v)
end
local NIL, TRUE, FALSE = '\192', '\195', '\194'

local function map_header(n)
  return string.char(0x80 + n)
end

local function int(n)
  return string.format('%d', n)
end

local function splice(body, off)
  return string.sub(body, 1, -2) .. mp(off)
end

local function presence_frame(room, sid, status, reason, user, off)
  local n = 5
  local body = mp('type') .. mp('presence') .. mp('room') .. mp(room) .. mp('session') .. mp(sid)
    .. mp('status') .. mp(status)
  if reason then
    n = n + 1
    body = body .. mp('reason') .. mp(reason)
  end
  if user and user ~= '' then
    n = n + 1
    body = body .. mp('user') .. mp(user)
  end
  return map_header(n) .. body .. mp('offset') .. mp(off)
end

local function member_record(js, away, user)
  return int(js) .. '|' .. (away and '1' or '0') .. '|' .. (user or '')
end

local function parse_member(rec)
  local js, away, user = string.match(rec, '^(%d+)|([01])|(.*)$')
  return tonumber(js), away == '1', user
end

-- Appends one frame to a room: takes the next offset, keeps the frame in the room's stream and
-- publishes it. `frame_of` builds the frame for an offset.
local function append(P, hist, room, frame_of, skip)
  local off = redis.call('HINCRBY', P .. 'r:' .. room, 'off', 1) - 1
  local frame = frame_of(off)
  skip = skip or ''
  if hist > 0 then
    redis.call('XADD', P .. 'rl:' .. room, 'MAXLEN', hist, '0-' .. int(off + 1), 'f', frame, 's', skip)
  end
  redis.call('PUBLISH', P .. 'c:' .. room, int(off) .. '\n' .. skip .. '\n' .. frame)
  return off
end

local function is_locked(f_hl, n, max)
  return f_hl == '1' or tonumber(n) >= tonumber(max)
end

-- Tells the room's members its owner, lock and metadata as they are now.
local function announce(P, hist, room, skip)
  local f = redis.call('HMGET', P .. 'r:' .. room, 'own', 'hl', 'n', 'max', 'meta')
  local locked = is_locked(f[2], f[3], f[4])
  return append(P, hist, room, function(off)
    return map_header(7) .. mp('type') .. mp('room_update') .. mp('room') .. mp(room)
      .. mp('owner') .. ((f[1] and f[1] ~= '') and mp(f[1]) or NIL)
      .. mp('locked') .. (locked and TRUE or FALSE)
      .. mp('locked_by_owner') .. (f[2] == '1' and TRUE or FALSE)
      .. mp('metadata') .. f[5] .. mp('offset') .. mp(off)
  end, skip)
end

-- Keeps the matchmaking indexes and the lobby up to date after a room's seats or rules changed.
local function reindex(P, room)
  local f = redis.call('HMGET', P .. 'r:' .. room, 'n', 'max', 'hl', 'prv', 'pw', 'mode')
  local open = f[4] ~= '1' and not f[5] and not is_locked(f[3], f[1], f[2])
  if open then
    redis.call('ZADD', P .. 'open', f[1], room)
  else
    redis.call('ZREM', P .. 'open', room)
  end
  if f[6] and f[6] ~= '' then
    if open then
      redis.call('ZADD', P .. 'open:' .. f[6], f[1], room)
    else
      redis.call('ZREM', P .. 'open:' .. f[6], room)
    end
  end
  redis.call('PUBLISH', P .. 'lobby', room)
end

local function dispose(P, room)
  local mode = redis.call('HGET', P .. 'r:' .. room, 'mode')
  redis.call('DEL', P .. 'r:' .. room, P .. 'rm:' .. room, P .. 'rk:' .. room, P .. 'rl:' .. room)
  redis.call('ZREM', P .. 'rooms', room)
  redis.call('ZREM', P .. 'open', room)
  if mode and mode ~= '' then
    redis.call('ZREM', P .. 'open:' .. mode, room)
  end
  redis.call('PUBLISH', P .. 'lobby', room)
end

-- Creates a room. `rules` = {max, prv, pw ('' or '='..password), dsp, meta, mode, epoch,
-- empty state}, `pairs` its metadata as key, packed value, key, packed value...
local function create_room(P, room, rules, pairs)
  local seq = redis.call('INCR', P .. 'seq')
  local rk = P .. 'r:' .. room
  redis.call('HSET', rk, 'max', rules[1], 'n', 0, 'hl', 0, 'own', '', 'prv', rules[2], 'dsp', rules[4],
    'meta', rules[5], 'mode', rules[6], 'ver', 0, 'st', rules[8], 'off', 0, 'ep', rules[7], 'cr', seq, 'js', 0)
  if rules[3] ~= '' then
    redis.call('HSET', rk, 'pw', string.sub(rules[3], 2))
  end
  for i = 1, #pairs, 2 do
    redis.call('HSET', P .. 'rk:' .. room, pairs[i], pairs[i + 1])
  end
  redis.call('ZADD', P .. 'rooms', seq, room)
end

-- The room as a newcomer finds it: {'ok', room, fields, member sid, record, sid, record...}.
local function snapshot(P, room)
  local f = redis.call('HMGET', P .. 'r:' .. room, 'max', 'hl', 'n', 'own', 'prv', 'meta', 'st', 'ver',
    'ep', 'off', 'pw', 'cr', 'mode')
  f[11] = f[11] and '1' or '0'
  local out = { 'ok', room, f }
  local members = redis.call('HGETALL', P .. 'rm:' .. room)
  for i = 1, #members do
    out[#out + 1] = members[i]
  end
  return out
end

local function ensure_session(P, node, sid, token, user)
  local sk = P .. 's:' .. sid
  if redis.call('EXISTS', sk) == 0 then
    redis.call('HSET', sk, 'node', node, 'tok', redis.sha1hex(token), 'user', user, 'away', 0)
    redis.call('SADD', P .. 'ns:' .. node, sid)
  end
end

-- Seats `sid` in the existing `room` (every check made): the others hear `presence` `joined`.
local function admit(P, hist, node, room, sid, token, user)
  ensure_session(P, node, sid, token, user)
  redis.call('SADD', P .. 'sr:' .. sid, room)
  local rk = P .. 'r:' .. room
  local js = redis.call('HINCRBY', rk, 'js', 1)
  local f = redis.call('HMGET', rk, 'n', 'max', 'hl', 'own')
  local was_locked = is_locked(f[3], f[1], f[2])
  append(P, hist, room, function(off)
    return presence_frame(room, sid, 'joined', nil, user, off)
  end, '')
  redis.call('HSET', P .. 'rm:' .. room, sid, member_record(js, false, user))
  local n = redis.call('HINCRBY', rk, 'n', 1)
  if f[4] == '' then
    redis.call('HSET', rk, 'own', sid)
  end
  if is_locked(f[3], n, f[2]) ~= was_locked then
    announce(P, hist, room, sid)
  end
  reindex(P, room)
  return snapshot(P, room)
end

-- The member who joined first.
local function oldest(P, room)
  local members = redis.call('HGETALL', P .. 'rm:' .. room)
  local best, best_js = '', nil
  for i = 1, #members, 2 do
    local js = parse_member(members[i + 1])
    if not best_js or js < best_js then
      best, best_js = members[i], js
    end
  end
  return best
end

-- Takes `sid` out of `room` for `reason`; the others hear `presence` `left`.
local function remove_member(P, hist, room, sid, reason)
  local rk, mk = P .. 'r:' .. room, P .. 'rm:' .. room
  redis.call('SREM', P .. 'sr:' .. sid, room)
  local rec = redis.call('HGET', mk, sid)
  if not rec then
    return false
  end
  local _, _, user = parse_member(rec)
  redis.call('HDEL', mk, sid)
  local f = redis.call('HMGET', rk, 'n', 'max', 'hl', 'own', 'dsp')
  local was_locked = is_locked(f[3], f[1], f[2])
  local n = redis.call('HINCRBY', rk, 'n', -1)
  if n == 0 then
    if f[5] == '1' then
      dispose(P, room)
    else
      redis.call('HSET', rk, 'own', '')
      reindex(P, room)
    end
    return true
  end
  local owner = f[4]
  if owner == sid then
    owner = oldest(P, room)
    redis.call('HSET', rk, 'own', owner)
  end
  append(P, hist, room, function(off)
    return presence_frame(room, sid, 'left', reason, user, off)
  end, '')
  if owner ~= f[4] or is_locked(f[3], n, f[2]) ~= was_locked then
    announce(P, hist, room, '')
  end
  reindex(P, room)
  return true
end

-- Forgets a session that is in no room any more.
local function forget_if_roomless(P, sid)
  if redis.call('SCARD', P .. 'sr:' .. sid) == 0 then
    local node = redis.call('HGET', P .. 's:' .. sid, 'node')
    if node then
      redis.call('SREM', P .. 'ns:' .. node, sid)
    end
    redis.call('ZREM', P .. 'orphans', sid)
    redis.call('DEL', P .. 's:' .. sid, P .. 'sr:' .. sid)
  end
end

local function remove_session(P, hist, sid, reason)
  local rooms = redis.call('SMEMBERS', P .. 'sr:' .. sid)
  for _, room in ipairs(rooms) do
    remove_member(P, hist, room, sid, reason)
  end
  forget_if_roomless(P, sid)
  return #rooms
end

local function member_of(P, room, sid)
  return redis.call('HEXISTS', P .. 'rm:' .. room, sid) == 1
end

local function common(a)
  return a[1], tonumber(a[2]), a[3]
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- join(sid, token, user, room, password ('' or '='..pw), max_rooms, rules (8), may create (1/0))
redis.register_function('parlor_join', function(_, a)
  local P, hist, node = common(a)
  local sid, token, user, room, pw, max_rooms = a[4], a[5], a[6], a[7], a[8], tonumber(a[9])
  if member_of(P, room, sid) then
    return { 'err', 'already_joined', room }
  end
  local rk = P .. 'r:' .. room
  if redis.call('EXISTS', rk) == 0 and a[18] == '0' then
    return { 'err', 'room_not_found', room }
  end
  if redis.call('EXISTS', rk) == 0 then
    if redis.call('ZCARD', P .. 'rooms') >= max_rooms then
      return { 'err', 'room_limit', int(max_rooms) }
    end
    create_room(P, room, { a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17] }, {})
  else
    local f = redis.call('HMGET', rk, 'hl', 'n', 'max', 'pw')
    if f[1] == '1' then
      return { 'err', 'room_locked', room }
    end
    if tonumber(f[2]) >= tonumber(f[3]) then
      return { 'err', 'room_full', room, f[3] }
    end
    if f[4] and pw ~= '=' .. f[4] then
      return { 'err', 'wrong_password', room }
    end
  end
  return admit(P, hist, node, room, sid, token, user)
end)

-- create(sid, token, user, room, max_rooms, rules (8), metadata pairs...)
redis.register_function('parlor_create', function(_, a)
  local P, hist, node = common(a)
  local sid, token, user, room, max_rooms = a[4], a[5], a[6], a[7], tonumber(a[8])
  if redis.call('EXISTS', P .. 'r:' .. room) == 1 then
    return { 'err', 'room_exists', room }
  end
  if redis.call('ZCARD', P .. 'rooms') >= max_rooms then
    return { 'err', 'room_limit', int(max_rooms) }
  end
  local pairs = {}
  for i = 17, #a do
    pairs[#pairs + 1] = a[i]
  end
  create_room(P, room, { a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16] }, pairs)
  return admit(P, hist, node, room, sid, token, user)
end)

-- join_or_create(sid, token, user, new room name ('' when none may be made), max_rooms,
-- rules (8), mode filter ('' for none), number of filter pairs, filter pairs..., number of
-- rooms the session may enter (-1: any), those rooms..., metadata pairs...): the fullest open
-- room matching the filter (oldest among equals), else a new one. Which rooms a token's claim
-- allows is decided by the node, in Rust; here only membership of that list is checked.
redis.register_function('parlor_match', function(_, a)
  local P, hist, node = common(a)
  local sid, token, user, new_room, max_rooms = a[4], a[5], a[6], a[7], tonumber(a[8])
  local rules = { a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16] }
  local mode = a[17]
  local i = 18
  local nfilter = tonumber(a[i])
  local filter = {}
  for j = 1, nfilter * 2 do
    filter[j] = a[i + j]
  end
  i = i + nfilter * 2 + 1
  local nallowed = tonumber(a[i])
  local allowed_set = {}
  for j = 1, math.max(nallowed, 0) do
    allowed_set[a[i + j]] = true
  end
  i = i + math.max(nallowed, 0) + 1
  local function allowed(room)
    return nallowed < 0 or allowed_set[room] == true
  end
  local index = mode ~= '' and (P .. 'open:' .. mode) or (P .. 'open')
  local candidates = redis.call('ZRANGE', index, 0, -1, 'WITHSCORES')
  local best, best_n, best_cr = nil, -1, nil
  for c = 1, #candidates, 2 do
    local room, n = candidates[c], tonumber(candidates[c + 1])
    if n >= best_n and allowed(room) and not member_of(P, room, sid) then
      local f = redis.call('HMGET', P .. 'r:' .. room, 'n', 'max', 'hl')
      local ok = not is_locked(f[3], f[1], f[2])
      for j = 1, #filter, 2 do
        if redis.call('HGET', P .. 'rk:' .. room, filter[j]) ~= filter[j + 1] then
          ok = false
          break
        end
      end
      if ok then
        local cr = tonumber(redis.call('HGET', P .. 'r:' .. room, 'cr'))
        if n > best_n or cr < best_cr then
          best, best_n, best_cr = room, n, cr
        end
      end
    end
  end
  if best then
    return admit(P, hist, node, best, sid, token, user)
  end
  if new_room == '' then
    return { 'err', 'forbidden', 'a new room' }
  end
  if redis.call('ZCARD', P .. 'rooms') >= max_rooms then
    return { 'err', 'room_limit', int(max_rooms) }
  end
  local pairs = {}
  for j = i, #a do
    pairs[#pairs + 1] = a[j]
  end
  create_room(P, new_room, rules, pairs)
  return admit(P, hist, node, new_room, sid, token, user)
end)

-- leave(sid, room, reason)
redis.register_function('parlor_leave', function(_, a)
  local P, hist = common(a)
  local sid, room, reason = a[4], a[5], a[6]
  if not remove_member(P, hist, room, sid, reason) then
    return { 'err', 'not_in_room', room }
  end
  forget_if_roomless(P, sid)
  return { 'ok' }
end)

-- emit(sid ('' for the backend), room, frame with offset 0, skip): appends the frame.
redis.register_function('parlor_emit', function(_, a)
  local P, hist = common(a)
  local sid, room, body, skip = a[4], a[5], a[6], a[7]
  if sid ~= '' and not member_of(P, room, sid) then
    return { 'err', 'not_in_room', room }
  end
  if redis.call('EXISTS', P .. 'r:' .. room) == 0 then
    return { 'err', 'not_in_room', room }
  end
  local off = append(P, hist, room, function(o)
    return splice(body, o)
  end, skip)
  return { 'ok', int(off) }
end)

-- state(room, version the new state was made from, new state, patch frame with offset 0,
-- writes in it, the writers' sids...): stores the state if it is still at that version and
-- every writer is still a member; else answers the state as it is now ({'conflict'...}) or the
-- writers who are not ({'gone'...}). A node sends its writes to one room one batch at a time,
-- all in one frame.
redis.register_function('parlor_state', function(_, a)
  local P, hist = common(a)
  local room, from, state, body, count = a[4], tonumber(a[5]), a[6], a[7], tonumber(a[8])
  local rk = P .. 'r:' .. room
  local f = redis.call('HMGET', rk, 'ver', 'st')
  if not f[1] then
    return { 'err', 'not_in_room', room }
  end
  if tonumber(f[1]) ~= from then
    return { 'conflict', f[1], f[2] }
  end
  local gone = { 'gone' }
  for i = 9, #a do
    if not member_of(P, room, a[i]) then
      gone[#gone + 1] = a[i]
    end
  end
  if #gone > 1 then
    return gone
  end
  redis.call('HSET', rk, 'ver', from + count, 'st', state)
  local off = append(P, hist, room, function(o)
    return splice(body, o)
  end, '')
  return { 'ok', int(off) }
end)

-- owner(sid, room, op, x, y, metadata pairs...): lock, unlock, meta (x packed metadata, y its
-- mode), kick (x the target).
redis.register_function('parlor_owner', function(_, a)
  local P, hist = common(a)
  local sid, room, op = a[4], a[5], a[6]
  if not member_of(P, room, sid) then
    return { 'err', 'not_in_room', room }
  end
  local rk = P .. 'r:' .. room
  if redis.call('HGET', rk, 'own') ~= sid then
    return { 'err', 'not_owner', room }
  end
  if op == 'kick' then
    local target = a[7]
    if not member_of(P, room, target) then
      return { 'err', 'unknown_session', target }
    end
    local node = redis.call('HGET', P .. 's:' .. target, 'node')
    remove_member(P, hist, room, target, 'kicked')
    forget_if_roomless(P, target)
    if node and node ~= '' then
      redis.call('PUBLISH', P .. 'i:' .. node, 'l\n' .. target .. '\n' .. room .. '\nkicked')
    end
    return { 'ok' }
  end
  if op == 'lock' or op == 'unlock' then
    redis.call('HSET', rk, 'hl', op == 'lock' and 1 or 0)
  elseif op == 'meta' then
    local old_mode = redis.call('HGET', rk, 'mode')
    if old_mode and old_mode ~= '' then
      redis.call('ZREM', P .. 'open:' .. old_mode, room)
    end
    redis.call('HSET', rk, 'meta', a[7], 'mode', a[8])
    redis.call('DEL', P .. 'rk:' .. room)
    for i = 9, #a, 2 do
      redis.call('HSET', P .. 'rk:' .. room, a[i], a[i + 1])
    end
  end
  announce(P, hist, room, '')
  reindex(P, room)
  return { 'ok' }
end)

-- presence(sid, status): the session's rooms hear it went `away` or came `back`.
redis.register_function('parlor_presence', function(_, a)
  local P, hist, node = common(a)
  local sid, status = a[4], a[5]
  local sk = P .. 's:' .. sid
  if redis.call('HGET', sk, 'node') ~= node then
    return { 'err', 'moved' }
  end
  local away = status == 'away'
  redis.call('HSET', sk, 'away', away and 1 or 0)
  local user = redis.call('HGET', sk, 'user')
  for _, room in ipairs(redis.call('SMEMBERS', P .. 'sr:' .. sid)) do
    local rec = redis.call('HGET', P .. 'rm:' .. room, sid)
    if rec then
      local js = parse_member(rec)
      redis.call('HSET', P .. 'rm:' .. room, sid, member_record(js, away, user))
      append(P, hist, room, function(off)
        return presence_frame(room, sid, status, nil, user, off)
      end, sid)
    end
  end
  return { 'ok' }
end)

-- remove(sid, reason, only if away (0/1)): the session leaves every room, if it is still this
-- node's.
redis.register_function('parlor_remove', function(_, a)
  local P, hist, node = common(a)
  local sid, reason, only_away = a[4], a[5], a[6] == '1'
  local f = redis.call('HMGET', P .. 's:' .. sid, 'node', 'away')
  if f[1] ~= node or (only_away and f[2] ~= '1') then
    return 0
  end
  return remove_session(P, hist, sid, reason)
end)

-- kick_session(sid): the backend removes a session wherever it is; its node is told.
redis.register_function('parlor_kick_session', function(_, a)
  local P, hist = common(a)
  local sid = a[4]
  local node = redis.call('HGET', P .. 's:' .. sid, 'node')
  if not node then
    return 0
  end
  remove_session(P, hist, sid, 'kicked')
  if node ~= '' then
    redis.call('PUBLISH', P .. 'i:' .. node, 'k\n' .. sid)
  end
  return 1
end)

-- direct(from, to, frame): delivers a frame to a session that shares a room with `from`.
redis.register_function('parlor_direct', function(_, a)
  local P = common(a)
  local from, to, frame = a[4], a[5], a[6]
  local shared = redis.call('SINTER', P .. 'sr:' .. from, P .. 'sr:' .. to)
  local node = redis.call('HGET', P .. 's:' .. to, 'node')
  if #shared == 0 or not node or node == '' then
    return { 'err', 'unknown_session', to }
  end
  redis.call('PUBLISH', P .. 'i:' .. node, 'd\n' .. to .. '\n' .. frame)
  return { 'ok' }
end)

-- take_over(sid, token, user): a resume on this node. Answers {'ok', was away (0/1), room,
-- epoch, next offset, ...}; the previous node, if another, is told.
redis.register_function('parlor_take_over', function(_, a)
  local P, hist, node = common(a)
  local sid, token, user = a[4], a[5], a[6]
  local sk = P .. 's:' .. sid
  local f = redis.call('HMGET', sk, 'node', 'tok', 'user', 'away')
  if not f[1] or f[2] ~= redis.sha1hex(token) or f[3] ~= user then
    return { 'err', 'resume_failed' }
  end
  local old = f[1]
  redis.call('HSET', sk, 'node', node, 'away', 0)
  if old ~= '' then
    redis.call('SREM', P .. 'ns:' .. old, sid)
  end
  redis.call('ZREM', P .. 'orphans', sid)
  redis.call('SADD', P .. 'ns:' .. node, sid)
  local out = { 'ok', f[4] }
  for _, room in ipairs(redis.call('SMEMBERS', P .. 'sr:' .. sid)) do
    local rec = redis.call('HGET', P .. 'rm:' .. room, sid)
    if rec then
      local r = redis.call('HMGET', P .. 'r:' .. room, 'ep', 'off')
      out[#out + 1] = room
      out[#out + 1] = r[1]
      out[#out + 1] = r[2]
      if f[4] == '1' then
        local js = parse_member(rec)
        redis.call('HSET', P .. 'rm:' .. room, sid, member_record(js, false, user))
        append(P, hist, room, function(off)
          return presence_frame(room, sid, 'back', nil, user, off)
        end, sid)
      end
    end
  end
  if old ~= '' and old ~= node then
    redis.call('PUBLISH', P .. 'i:' .. old, 'r\n' .. sid)
  end
  return out
end)

-- beat(ttl_ms): renews this node's heartbeat. Answers whether the node was still registered
-- (0 when it is new, or was purged while cut off) and the registered nodes whose heartbeat is
-- gone.
redis.register_function('parlor_beat', function(_, a)
  local P, _, node = common(a)
  local known = redis.call('SISMEMBER', P .. 'nodes', node)
  redis.call('SET', P .. 'n:' .. node, '1', 'PX', a[4])
  redis.call('SADD', P .. 'nodes', node)
  local dead = {}
  for _, other in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('EXISTS', P .. 'n:' .. other) == 0 then
      dead[#dead + 1] = other
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', P .. 'orphans', '-inf', now_ms(), 'LIMIT', 0, 100)
  return { known, dead, expired }
end)

-- purge(dead node, batch): removes up to `batch` of a dead node's sessions (their rooms hear
-- `left`, reason `node_lost`). Answers how many are left; 0 once the node is gone.
redis.register_function('parlor_purge', function(_, a)
  local P, hist = common(a)
  local dead, batch = a[4], tonumber(a[5])
  if redis.call('EXISTS', P .. 'n:' .. dead) == 1 then
    return 0
  end
  local nk = P .. 'ns:' .. dead
  local sids = redis.call('SRANDMEMBER', nk, batch)
  for _, sid in ipairs(sids) do
    redis.call('SREM', nk, sid)
    if redis.call('HGET', P .. 's:' .. sid, 'node') == dead then
      remove_session(P, hist, sid, 'node_lost')
    end
  end
  local left = redis.call('SCARD', nk)
  if left == 0 then
    redis.call('SREM', P .. 'nodes', dead)
  end
  return left
end)

-- expire(sid): an orphan whose grace is over leaves its rooms (reason `timeout`).
redis.register_function('parlor_expire', function(_, a)
  local P, hist = common(a)
  local sid = a[4]
  local score = redis.call('ZSCORE', P .. 'orphans', sid)
  if not score or tonumber(score) > now_ms() then
    return 0
  end
  redis.call('ZREM', P .. 'orphans', sid)
  return remove_session(P, hist, sid, 'timeout')
end)

-- release(grace_ms): the node shuts down. Its sessions in rooms become orphans, away, for the
-- grace, so that they may resume on another node; then the node unregisters.
redis.register_function('parlor_release', function(_, a)
  local P, hist, node = common(a)
  local deadline = now_ms() + tonumber(a[4])
  local nk = P .. 'ns:' .. node
  for _, sid in ipairs(redis.call('SMEMBERS', nk)) do
    local sk = P .. 's:' .. sid
    if redis.call('HGET', sk, 'node') == node then
      local user = redis.call('HGET', sk, 'user')
      local was_away = redis.call('HGET', sk, 'away') == '1'
      redis.call('HSET', sk, 'node', '', 'away', 1)
      redis.call('ZADD', P .. 'orphans', deadline, sid)
      for _, room in ipairs(redis.call('SMEMBERS', P .. 'sr:' .. sid)) do
        local rec = redis.call('HGET', P .. 'rm:' .. room, sid)
        if rec and not was_away then
          local js = parse_member(rec)
          redis.call('HSET', P .. 'rm:' .. room, sid, member_record(js, true, user))
          append(P, hist, room, function(off)
            return presence_frame(room, sid, 'away', nil, user, off)
          end, sid)
        end
      end
    end
  end
  redis.call('DEL', nk, P .. 'n:' .. node)
  redis.call('SREM', P .. 'nodes', node)
  return 1
end)

-- check(sid, room, sid, room...): which of these memberships Redis no longer has (after an
-- outage: purged, or lost with a Redis that kept no data).
redis.register_function('parlor_check', function(_, a)
  local P = common(a)
  local gone = {}
  for i = 4, #a, 2 do
    if not member_of(P, a[i + 1], a[i]) then
      gone[#gone + 1] = a[i]
      gone[#gone + 1] = a[i + 1]
    end
  end
  return gone
end)

-- snapshot(room): the room whole, or nothing.
redis.register_function('parlor_snapshot', function(_, a)
  local P = common(a)
  if redis.call('EXISTS', P .. 'r:' .. a[4]) == 0 then
    return { 'err', 'no_room', a[4] }
  end
  return snapshot(P, a[4])
end)

-- rooms(room names... or none for every room, oldest first): each as {room, n, max, hl, own,
-- prv, pw, meta}.
redis.register_function('parlor_rooms', function(_, a)
  local P = common(a)
  local names = {}
  if #a >= 4 then
    for i = 4, #a do
      names[#names + 1] = a[i]
    end
  else
    names = redis.call('ZRANGE', P .. 'rooms', 0, -1)
  end
  local out = {}
  for _, room in ipairs(names) do
    local f = redis.call('HMGET', P .. 'r:' .. room, 'n', 'max', 'hl', 'own', 'prv', 'pw', 'meta')
    if f[1] then
      out[#out + 1] = { room, f[1], f[2], f[3], f[4], f[5], f[6] and '1' or '0', f[7] }
    end
  end
  return out
end)

-- audit(): every broken rule of the data model, as text (none: an empty list). For tests.
redis.register_function('parlor_audit', function(_, a)
  local P = common(a)
  local bad = {}
  local function report(text)
    bad[#bad + 1] = text
  end
  for _, room in ipairs(redis.call('ZRANGE', P .. 'rooms', 0, -1)) do
    local f = redis.call('HMGET', P .. 'r:' .. room, 'n', 'max', 'own', 'dsp', 'prv', 'pw', 'hl', 'mode')
    local n, max = tonumber(f[1]), tonumber(f[2])
    if not n then
      report('room ' .. room .. ' is listed but has no record')
    else
      if redis.call('HLEN', P .. 'rm:' .. room) ~= n then
        report('room ' .. room .. ' counts ' .. n .. ' members but lists another number')
      end
      if n > max then
        report('room ' .. room .. ' is over its seats')
      end
      if n == 0 and f[4] == '1' then
        report('room ' .. room .. ' is empty but still exists')
      end
      if (n == 0) ~= (f[3] == '') or (n > 0 and not member_of(P, room, f[3])) then
        report('room ' .. room .. ' has owner ' .. tostring(f[3]) .. ' with ' .. n .. ' members')
      end
      local open = f[5] ~= '1' and not f[6] and not is_locked(f[7], f[1], f[2])
      if open ~= (redis.call('ZSCORE', P .. 'open', room) ~= false) then
        report('room ' .. room .. ' is wrongly in or out of the matchmaking index')
      end
      local members = redis.call('HKEYS', P .. 'rm:' .. room)
      for _, sid in ipairs(members) do
        if redis.call('SISMEMBER', P .. 'sr:' .. sid, room) == 0 then
          report(sid .. ' is in room ' .. room .. ' but does not list it')
        end
        if redis.call('EXISTS', P .. 's:' .. sid) == 0 then
          report(sid .. ' is in room ' .. room .. ' but is no session')
        end
      end
    end
  end
  local function check_session(sid, node)
    local owner = redis.call('HGET', P .. 's:' .. sid, 'node')
    if owner ~= node then
      report(sid .. ' is filed under node ' .. node .. ' but is on ' .. tostring(owner))
    end
    for _, room in ipairs(redis.call('SMEMBERS', P .. 'sr:' .. sid)) do
      if not member_of(P, room, sid) then
        report(sid .. ' lists room ' .. room .. ' but is not a member')
      end
    end
  end
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    for _, sid in ipairs(redis.call('SMEMBERS', P .. 'ns:' .. node)) do
      check_session(sid, node)
    end
  end
  for _, sid in ipairs(redis.call('ZRANGE', P .. 'orphans', 0, -1)) do
    check_session(sid, '')
  end
  return bad
end)
