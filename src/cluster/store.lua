#!lua name=parlor
--[[
Parlor's cluster store: what must be atomic inside Redis, and nothing else. No room rule is
here (seats, locks, owners, state versions are decided by the room's home, in Rust); these
functions only hold leases, refuse a fenced-off home's writes, give frames their offsets, and
keep the indexes. Arguments are named: each function takes one MessagePack map (ARGV[1]).

Every function declares its keys, all in one hash slot, so the same library runs on one Redis
and on a Redis Cluster. P is the key prefix (e.g. "parlor:"); R a room; H a hash of R; N a node;
S a session.

  P{r:H}:room:R     hash: home (node), epoch (lease generation), until (lease end, ms of Redis's
                    clock), next (the room's next offset), hist (history epoch), ck (checkpoint),
                    state, version, logic ('1': a room with logic, whose emits go to its home),
                    lo (the offset a replaying logic's snapshot in ck was taken at: a claim
                    returns the log from there)
  P{r:H}:members:R  set of the members' session ids (what a fast-path emit checks)
  P{r:H}:log:R      stream of the room's frames: one entry per call that appends, its id
                    0-<its last offset + 1>, its field m the call's channel message (below);
                    a build before wrote one entry per frame (fields f, s), which nodes
                    still read
  P{r:H}:c:L:R:E    channel of the room's incarnation with history epoch E (L: the length of R):
                    one message per call that appends, holding each frame appended as
                    "<offset>\n<skip>\n<length>\n<frame>", one after the other
  P{n:N}:rooms      set of the rooms the node is home to
  P{n:N}:inbox      channel: messages to the node (MessagePack)
  P{s:S}:session    hash: node, tok (SHA-1 of the resume token), user, orphan (ms: handed over
                    at a shutdown, away until then)
  P{s:S}:rooms      set of the session's rooms
  P{ix}:rooms       hash: room -> its listing (MessagePack), every room
  P{ix}:ver         bumped by a new listing or one that may take a matchmaker it did not before
                    (matchmaking's compare-and-set)
  P{ix}:beats       zset: every node, by when its heartbeat runs out (ms)
  P{ix}:orphans     zset: sessions handed over at a shutdown, by the end of their grace (ms)
  P{ix}:lobby       channel: the name of every room whose listing changed

A frame arrives with offset 0 as its last byte (MessagePack's 0); `append` puts the real one
in its place.
]]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%d', n)
end

local function args(a)
  return cmsgpack.unpack(a[1])
end

-- Appends frames to a room: their offsets (from the room's `next`), one entry in the log
-- holding them all (the log keeps at least the last `keep` frames: an entry goes once its last
-- frame is older), and one publish of the same message on the channel of the room's
-- incarnation (`head` .. its history epoch). `frames`: {{body, skip}}. Returns the offsets.
local function append(k, head, keep, frames)
  local n = #frames
  if n == 0 then
    return {}
  end
  local next = redis.call('HINCRBY', k[1], 'next', n)
  local first = next - n
  -- The message's pieces, joined once (Redis's Lua hashes every string it makes).
  local offsets, pieces = {}, {}
  for i = 1, n do
    local f = frames[i]
    local off = first + i - 1
    local frame = string.sub(f[1], 1, -2) .. cmsgpack.pack(off)
    offsets[i] = off
    pieces[#pieces + 1] = int(off) .. '\n' .. f[2] .. '\n' .. #frame .. '\n'
    pieces[#pieces + 1] = frame
  end
  local message = table.concat(pieces)
  if keep > 0 then
    local id = '0-' .. int(next)
    if next > keep then
      redis.call('XADD', k[3], 'MINID', '~', '0-' .. int(next - keep + 1), id, 'm', message)
    else
      redis.call('XADD', k[3], id, 'm', message)
    end
  end
  local channel = head .. (redis.call('HGET', k[1], 'hist') or '')
  redis.call('PUBLISH', channel, message)
  return offsets
end

-- The room's lease, and whether `node` holds it now.
-- `out` with the members of set `key` appended (a session's rooms).
local function with_members(out, key)
  for _, member in ipairs(redis.call('SMEMBERS', key)) do
    out[#out + 1] = member
  end
  return out
end

local function lease(k)
  local f = redis.call('HMGET', k[1], 'home', 'epoch', 'until')
  return f[1], tonumber(f[2]), tonumber(f[3])
end

-- claim {node, ttl, create = {ck, state, hist} or nil, fresh}: become the room's home.
--   {'created', epoch, now}        the room did not exist and is made with `create`
--   {'claimed', epoch, ck, state, next, version, hist, since, lo}   the lease had run out:
--                                  taken over; `since`: the log's entries ({id, fields}, as
--                                  XRANGE gives them) holding the frames from offset `lo` on
--                                  (frames before `lo` may lead; what a logic that replays its
--                                  broadcasts takes back), or empty
--   {'held', home, epoch, until, now}              another node holds it
--   {'exists'}                     `fresh` and the room exists
--   {'absent'}                     no room, and nothing to make
redis.register_function('parlor_claim', function(k, a)
  local x = args(a)
  local now = now_ms()
  local home, epoch, untl = lease(k)
  if not epoch then
    if not x.create then
      return { 'absent' }
    end
    redis.call('DEL', k[1], k[2], k[3])
    redis.call('HSET', k[1], 'home', x.node, 'epoch', 1, 'until', now + x.ttl, 'next', 0,
      'hist', x.create.hist, 'ck', x.create.ck, 'state', x.create.state, 'version', 0)
    return { 'created', 1, now }
  end
  if x.fresh then
    return { 'exists' }
  end
  if home ~= x.node and untl >= now then
    return { 'held', home, epoch, untl, now }
  end
  -- The lease ran out, or this node held it but has not the room in memory (it asks only
  -- then): a new epoch fences off whatever it wrote before.
  epoch = epoch + 1
  redis.call('HSET', k[1], 'home', x.node, 'epoch', epoch, 'until', now + x.ttl)
  local f = redis.call('HMGET', k[1], 'ck', 'state', 'next', 'version', 'hist', 'lo')
  local since = {}
  if f[6] then
    since = redis.call('XRANGE', k[3], '0-' .. int(tonumber(f[6]) + 1), '+')
  end
  return { 'claimed', epoch, f[1], f[2], f[3], f[4], f[5], since, f[6] or '' }
end)

-- renew {node, epoch, ttl}: the home keeps its lease; refused once it ran out or moved on.
redis.register_function('parlor_renew', function(k, a)
  local x = args(a)
  local now = now_ms()
  local home, epoch, untl = lease(k)
  if home ~= x.node or epoch ~= x.epoch or not untl or untl < now then
    return { 'fenced', home or '', epoch or 0 }
  end
  redis.call('HSET', k[1], 'until', now + x.ttl)
  return { 'ok' }
end)

-- release {node, epoch}: a home shutting down lets the room go at once.
redis.register_function('parlor_release', function(k, a)
  local x = args(a)
  local home, epoch = lease(k)
  if home == x.node and epoch == x.epoch then
    redis.call('HSET', k[1], 'until', 0)
  end
  return { 'ok' }
end)

-- commit {node, epoch, keep, head, history, ck, lo, state, version, add, remove,
-- frames = {{b, s}}, delete}: the home's changes to a room, all or nothing, if its lease
-- still holds (`lo` with `ck`: where a replaying logic's snapshot was taken).
--   {'ok', first offset or -1, next offset}   |   {'fenced', home, epoch}
redis.register_function('parlor_commit', function(k, a)
  local x = args(a)
  local now = now_ms()
  local home, epoch, untl = lease(k)
  if home ~= x.node or epoch ~= x.epoch or not untl or untl < now then
    return { 'fenced', home or '', epoch or 0 }
  end
  if x.delete then
    redis.call('DEL', k[1], k[2], k[3])
    return { 'ok', -1, 0 }
  end
  if x.ck then
    redis.call('HSET', k[1], 'ck', x.ck, 'hist', x.history)
    if x.logic then
      redis.call('HSET', k[1], 'logic', '1')
    end
    if x.lo then
      redis.call('HSET', k[1], 'lo', x.lo)
    else
      redis.call('HDEL', k[1], 'lo')
    end
  end
  if x.state then
    redis.call('HSET', k[1], 'state', x.state, 'version', x.version)
  end
  for _, sid in ipairs(x.remove or {}) do
    redis.call('SREM', k[2], sid)
  end
  for _, sid in ipairs(x.add or {}) do
    redis.call('SADD', k[2], sid)
  end
  local frames = {}
  for i, f in ipairs(x.frames or {}) do
    frames[i] = { f.b, f.s or '' }
  end
  local offsets = append(k, x.head, x.keep, frames)
  return { 'ok', offsets[1] or -1, tonumber(redis.call('HGET', k[1], 'next')) }
end)

-- emit {keep, head}, then {member or nil, skip, body} per event: events straight into the
-- log, each a member's (if it still is one) or the backend's (if the room exists): the fast
-- path that costs one round trip, home or not. The link joins a room's emits queued together
-- into one call (one publish, the first map sent once); each is answered as if alone, in order:
--   {{'ok', offset} | {'not_member'} | {'logic'}, ...}
redis.register_function('parlor_emit', function(k, a)
  -- A room with logic: its emits go to its home, whose logic takes them.
  local logic = redis.call('HGET', k[1], 'logic') == '1'
  local exists -- asked only for the backend's emits
  -- Why emit `x` is not taken, if it is not.
  local function refused(x)
    if logic then
      return 'logic'
    end
    if x.member then
      if redis.call('SISMEMBER', k[2], x.member) == 0 then
        return 'not_member'
      end
    else
      if exists == nil then
        exists = redis.call('HEXISTS', k[1], 'ck') == 1
      end
      if not exists then
        return 'not_member'
      end
    end
  end
  local c = cmsgpack.unpack(a[1])
  local answers, frames, taken = {}, {}, {}
  for i = 2, #a do
    local x = cmsgpack.unpack(a[i])
    local why = refused(x)
    if why then
      answers[i - 1] = { why }
    else
      frames[#frames + 1] = { x.body, x.skip or '' }
      taken[#frames] = i - 1
    end
  end
  for j, off in ipairs(append(k, c.head, c.keep, frames)) do
    answers[taken[j]] = { 'ok', off }
  end
  return answers
end)

-- index_put {room, listing ('' to remove), opens, lobby}: a room's listing as its home last
-- wrote it. The version moves on for a new room or one that `opens` (may take a matchmaker it
-- did not before), not for one that only filled up: see index_create.
redis.register_function('parlor_index_put', function(k, a)
  local x = args(a)
  local new = 0
  if x.listing == '' then
    redis.call('HDEL', k[1], x.room)
  else
    new = redis.call('HSET', k[1], x.room, x.listing)
  end
  if new == 1 or x.opens then
    redis.call('INCR', k[2])
  end
  redis.call('PUBLISH', x.lobby, x.room)
  return { 'ok' }
end)

-- index_read {rooms = {names} or nil}: the index's version and listings (all, or these).
redis.register_function('parlor_index_read', function(k, a)
  local x = args(a)
  local out = { tonumber(redis.call('GET', k[2]) or '0') }
  if x.rooms then
    if #x.rooms > 0 then
      local got = redis.call('HMGET', k[1], unpack(x.rooms))
      for i, name in ipairs(x.rooms) do
        if got[i] then
          out[#out + 1] = name
          out[#out + 1] = got[i]
        end
      end
    end
  else
    local all = redis.call('HGETALL', k[1])
    for i = 1, #all do
      out[#out + 1] = all[i]
    end
  end
  return out
end)

-- index_create {ver, room, listing, lobby}: lists a new room, only if the index has not changed
-- since version `ver` was read: two matchmakers that both found no room make one room, not two.
--   {'ok'}   |   {'changed'}
redis.register_function('parlor_index_create', function(k, a)
  local x = args(a)
  if tonumber(redis.call('GET', k[2]) or '0') ~= x.ver then
    return { 'changed' }
  end
  redis.call('HSET', k[1], x.room, x.listing)
  redis.call('INCR', k[2])
  redis.call('PUBLISH', x.lobby, x.room)
  return { 'ok' }
end)

-- session_put {node, token, user, add, remove}: a session's node and rooms as its node knows
-- them; the record goes when the session is in no room.
redis.register_function('parlor_session_put', function(k, a)
  local x = args(a)
  if redis.call('EXISTS', k[1]) == 0 then
    redis.call('HSET', k[1], 'node', x.node, 'tok', redis.sha1hex(x.token), 'user', x.user or '')
  elseif redis.call('HGET', k[1], 'node') ~= x.node then
    return { 'moved' }
  end
  for _, room in ipairs(x.remove or {}) do
    redis.call('SREM', k[2], room)
  end
  for _, room in ipairs(x.add or {}) do
    redis.call('SADD', k[2], room)
  end
  if redis.call('SCARD', k[2]) == 0 then
    redis.call('DEL', k[1], k[2])
  end
  return { 'ok' }
end)

-- take_over {token, user, node, orphans}: a resume on `node`, proven by the token: the
-- session moves there. {'ok', old node, rooms...}   |   {'refused'}
redis.register_function('parlor_take_over', function(k, a)
  local x = args(a)
  local f = redis.call('HMGET', k[1], 'node', 'tok', 'user')
  if not f[2] or f[2] ~= redis.sha1hex(x.token) or (f[3] or '') ~= (x.user or '') then
    return { 'refused' }
  end
  redis.call('HSET', k[1], 'node', x.node)
  redis.call('HDEL', k[1], 'orphan')
  return with_members({ 'ok', f[1] }, k[2])
end)

-- session_end {node, orphan_for or nil}: the session's connection ended on `node` ('' for one
-- handed over). With `orphan_for` (ms) it is handed over (a shutdown): kept, away, resumable
-- anywhere until then; without, it is gone. Refused if it has moved on since.
--   {'ok', handed over until (ms, 0: gone), rooms...}   |   {'moved'}
redis.register_function('parlor_session_end', function(k, a)
  local x = args(a)
  local node = redis.call('HGET', k[1], 'node')
  if node ~= x.node then
    return { 'moved' }
  end
  local untl = 0
  if x.orphan_for then
    untl = now_ms() + x.orphan_for
  end
  local out = with_members({ 'ok', untl }, k[2])
  if x.orphan_for then
    redis.call('HSET', k[1], 'node', '', 'orphan', untl)
  else
    redis.call('DEL', k[1], k[2])
  end
  return out
end)

-- read_log {from, to}: whether the room exists, its history epoch and next offset, and the
-- log's entries ({id, fields}, as XRANGE gives them; the node reads them) holding its frames
-- from offset `from` up to `to` (exclusive; -1: to the end), which may hold frames around
-- them too: {exists, hist, next, entry, ...}.
redis.register_function('parlor_read_log', function(k, a)
  local x = args(a)
  local f = redis.call('HMGET', k[1], 'ck', 'next', 'hist')
  local out = { f[1] and '1' or '0', f[3] or '', tonumber(f[2] or '0') }
  if x.to >= 0 and x.to <= x.from then
    return out
  end
  local from = '0-' .. int(x.from + 1)
  local entries
  if x.to >= 0 then
    -- The entries ending before `to`, and, unless one ends just before it, the next one,
    -- which holds the frames up to `to` and some after.
    local last = '0-' .. int(x.to)
    entries = redis.call('XRANGE', k[3], from, last)
    local tail = entries[#entries]
    if not tail or tail[1] ~= last then
      for _, e in ipairs(redis.call('XRANGE', k[3], '(' .. last, '+', 'COUNT', 1)) do
        entries[#entries + 1] = e
      end
    end
  else
    entries = redis.call('XRANGE', k[3], from, '+')
  end
  for _, e in ipairs(entries) do
    out[#out + 1] = e
  end
  return out
end)

-- room_read {}: a room's checkpoint, state and next offset: {ck, state, next}, or {}.
redis.register_function('parlor_room_read', function(k, _)
  local f = redis.call('HMGET', k[1], 'ck', 'state', 'next')
  if not f[1] then
    return {}
  end
  return { f[1], f[2] or '', tonumber(f[3] or '0') }
end)

-- still_members {sessions}: those of `sessions` the room's member set holds (a node checks its
-- sessions' seats after it was cut off).
redis.register_function('parlor_still_members', function(k, a)
  local x = args(a)
  local out = {}
  for _, s in ipairs(x.sessions) do
    if redis.call('SISMEMBER', k[1], s) == 1 then
      out[#out + 1] = s
    end
  end
  return out
end)

-- session_read {}: a session's node ('' while handed over) and rooms: {node, rooms...}, or {}.
redis.register_function('parlor_session_read', function(k, _)
  local node = redis.call('HGET', k[1], 'node')
  if not node then
    return {}
  end
  return with_members({ node }, k[2])
end)

-- beat {node or nil, ttl}: `node` beats (alive for `ttl` ms more); every node known, and whether
-- it is alive: {node, 1 or 0, ...}. Nodes dead for an hour are forgotten.
redis.register_function('parlor_beat', function(k, a)
  local x = args(a)
  local now = now_ms()
  if x.node then
    redis.call('ZADD', k[1], now + x.ttl, x.node)
  end
  redis.call('ZREMRANGEBYSCORE', k[1], '-inf', now - 3600000)
  local all = redis.call('ZRANGE', k[1], 0, -1, 'WITHSCORES')
  local out = {}
  for i = 1, #all, 2 do
    out[#out + 1] = all[i]
    out[#out + 1] = (tonumber(all[i + 1]) >= now) and 1 or 0
  end
  return out
end)

-- orphan {session, ms}: session handed over at a shutdown, due to end in `ms` unless resumed.
redis.register_function('parlor_orphan', function(k, a)
  local x = args(a)
  redis.call('ZADD', k[1], now_ms() + x.ms, x.session)
  return { 'ok' }
end)

-- take_node_rooms {}: a dead node's rooms, taken out of its set by the one survivor that asks
-- first.
redis.register_function('parlor_take_node_rooms', function(k, _)
  local rooms = redis.call('SMEMBERS', k[1])
  redis.call('DEL', k[1])
  return rooms
end)

-- orphans_due {}: the sessions handed over at a shutdown whose grace has ended, taken out of
-- the set by the one node that asks first.
redis.register_function('parlor_orphans_due', function(k, _)
  local due = redis.call('ZRANGEBYSCORE', k[1], '-inf', now_ms())
  for _, sid in ipairs(due) do
    redis.call('ZREM', k[1], sid)
  end
  return due
end)
