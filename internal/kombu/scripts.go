package kombu

import "github.com/redis/go-redis/v9"

// The broker operations run as Lua scripts so that a message's bytes stay in Redis
// unless this process needs them. Two other ways were weighed: reading RESP ourselves
// would learn a bulk string's length before its bytes, but the bytes would still cross
// the network (a 660 MB backlog sample is 660 MB of traffic even if discarded), and a
// plain client cannot skip them; LMOVE moves whole messages but cannot say how large
// they are. A script reads one element at a time inside Redis, returns its length and
// at most a bounded part of it, and moves what is too large to the dead-letter list
// server-side. Each script works on a bounded number of elements per call, so none
// blocks Redis for long.

// luaGC bounds the script's own heap: Lua strings of large elements are garbage once
// measured, and are collected whenever more than 64 MB went through.
const luaGC = `
local seen = 0
local function measured(n)
  seen = seen + n
  if seen > 67108864 then collectgarbage('collect'); seen = 0 end
end
`

// deliverScript pops up to ARGV[1] messages from the priority lists KEYS[4..] in order
// and records each in the unacked hash and index, as QoS.append does, in one atomic
// step: no crash can lose a popped message. Messages over ARGV[3] bytes are not
// returned: they go to the dead-letter list KEYS[3] with reason "oversized". It stops
// when the returned bytes reach ARGV[2] or the bytes read reach ARGV[8].
//
// The entry embeds the message as is when it looks like a JSON object (first and last
// byte), else as a JSON string; a full JSON check here would cost more Redis time than
// the rest of the delivery, and a message that looks like an object without being one
// is dead-lettered by the caller within the same pass.
var deliverScript = redis.NewScript(luaGC + `
local maxn, budget, maxmsg = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, prefix, suffix, queue, work = ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local out = {0, 0}
local n, bytes, read = 0, 0, 0
for k = 4, #KEYS do
  while n < maxn and bytes < budget and read < work do
    local m = redis.call('RPOP', KEYS[k])
    if not m then break end
    n = n + 1
    local l = #m
    read = read + l
    if l > maxmsg then
      redis.call('LPUSH', KEYS[3], cjson.encode({reason = 'oversized',
        error = 'message of ' .. l .. ' bytes exceeds the limit of ' .. maxmsg,
        queue = queue, list = KEYS[k], at = tonumber(now), bytes = l, message = m}))
      out[1] = out[1] + 1
      out[2] = out[2] + l
    else
      local tag = prefix .. n
      local entry
      if l >= 2 and string.byte(m, 1) == 123 and string.byte(m, l) == 125 then
        entry = '[' .. m .. suffix
      else
        entry = cjson.encode({m, '', queue})
      end
      redis.call('HSET', KEYS[1], tag, entry)
      redis.call('ZADD', KEYS[2], now, tag)
      bytes = bytes + l
      out[#out + 1] = tag
      out[#out + 1] = k - 3
      out[#out + 1] = m
    end
    m = nil
    measured(l)
  end
end
return out
`)

// deadScript moves one delivered message (tag ARGV[1], bytes ARGV[6]) from the unacked
// hash to the dead-letter list with its reason. A tag no longer in the hash was
// restored meanwhile: the message is back on its queue, so it is not dead-lettered too.
var deadScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], cjson.encode({reason = ARGV[2], error = ARGV[3], queue = ARGV[4],
  at = tonumber(ARGV[5]), bytes = #ARGV[6], message = ARGV[6]}))
return 1
`)

// restoreScript is kombu's restore_visible for the deliveries whose tag starts with
// ARGV[2]: entries in the index scored at or before ARGV[1] (offset ARGV[4], at most
// ARGV[3]) are put back at the consuming end of their priority list (RPUSH, as kombu
// does) and removed from the hash and index, atomically, so a message is restored at
// most once. It yields while kombu's own restore holds unacked_mutex (KEYS[3]).
var restoreScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return {-1, 0, 0} end
local tags = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', ARGV[4], ARGV[3])
local prefix, keyprefix, queue, sep, suffix = ARGV[2], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local steps = {}
for i = 9, #ARGV do steps[#steps + 1] = tonumber(ARGV[i]) end
local restored, skipped = 0, 0
for _, tag in ipairs(tags) do
  if string.sub(tag, 1, #prefix) ~= prefix then
    skipped = skipped + 1
  else
    local e = redis.call('HGET', KEYS[1], tag)
    redis.call('HDEL', KEYS[1], tag)
    redis.call('ZREM', KEYS[2], tag)
    if e then
      local m
      if string.sub(e, 1, 1) == '[' and string.sub(e, -#suffix) == suffix then
        m = string.sub(e, 2, #e - #suffix)
      else
        local ok, t = pcall(cjson.decode, e)
        if ok and type(t) == 'table' and type(t[1]) == 'string' then m = t[1] end
      end
      if m then
        local pri = 0
        local ok, t = pcall(cjson.decode, m)
        if ok and type(t) == 'table' and type(t.properties) == 'table' then
          pri = tonumber(t.properties.priority) or 0
        end
        local step = steps[1]
        for _, s in ipairs(steps) do if s <= pri then step = s end end
        local key = keyprefix .. queue
        if step ~= 0 then key = key .. sep .. step end
        redis.call('RPUSH', key, m)
        restored = restored + 1
      end
    end
  end
end
return {restored, skipped, #tags}
`)

// peekScript returns, for the elements ARGV[1]..ARGV[2] of list KEYS[1] (negative
// indexes count from the tail), each element's length and either the element (when it
// is at most ARGV[3] bytes and the reply holds less than ARGV[5] bytes so far, or is
// no longer than its two edges) or its first and last ARGV[4] bytes.
var peekScript = redis.NewScript(luaGC + `
local n = redis.call('LLEN', KEYS[1])
local s, e = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxmsg, edge, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if s < 0 then s = n + s end
if e < 0 then e = n + e end
if s < 0 then s = 0 end
if e >= n then e = n - 1 end
local out, held = {}, 0
for i = s, e do
  local m = redis.call('LINDEX', KEYS[1], i)
  if m then
    local l = #m
    out[#out + 1] = l
    if (l <= maxmsg and held + l <= budget) or l <= 2 * edge then
      out[#out + 1] = m
      held = held + l
    elseif edge > 0 then
      out[#out + 1] = string.sub(m, 1, edge) .. string.sub(m, -edge)
    else
      out[#out + 1] = ''
    end
    m = nil
    measured(l)
  end
end
return out
`)

// unackedTailsScript returns, for the index entries ARGV[1]..ARGV[2] (oldest first),
// each tag, its delivery time, its entry's length and the entry's last ARGV[3] bytes,
// where kombu's [message, exchange, routing_key] keeps the route.
var unackedTailsScript = redis.NewScript(luaGC + `
local z = redis.call('ZRANGE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES')
local tail = tonumber(ARGV[3])
local out = {}
for i = 1, #z, 2 do
  local v = redis.call('HGET', KEYS[1], z[i])
  if v then
    out[#out + 1] = z[i]
    out[#out + 1] = z[i + 1]
    out[#out + 1] = #v
    out[#out + 1] = string.sub(v, -tail)
    measured(#v)
    v = nil
  end
end
return out
`)
