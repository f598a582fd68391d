//! The Lua scripts the bus runs inside Redis, each atomic (no other client's command
//! runs in between). They are sent with `EVAL` every time: Redis keeps a compiled copy
//! keyed by the text's hash, and nothing has to be loaded again after Redis restarts.

/// `KEYS[1]` the stream; `ARGV[1]` how old (ms, by Redis's clock) an entry must be to
/// go. Trims with `XTRIM MINID` below the oldest entry any group still needs: for each
/// group, its oldest pending (delivered, unacknowledged) entry, or the entry after the
/// last one delivered to it. Entries a group has not acknowledged are never removed.
/// Returns how many entries were removed.
pub(crate) const TRIM: &str = r"
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local now = redis.call('TIME')
local cut_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
if cut_ms <= 0 then return 0 end
local cut = string.format('%d-0', cut_ms)
for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local name, pending, last
  for i = 1, #group, 2 do
    local field = group[i]
    if field == 'name' then name = group[i + 1]
    elseif field == 'pending' then pending = group[i + 1]
    elseif field == 'last-delivered-id' then last = group[i + 1] end
  end
  local ms, seq = parse(last)
  local needed = string.format('%d-%d', ms, seq + 1)
  if pending > 0 then
    local oldest = redis.call('XPENDING', key, name)[2]
    if less(oldest, needed) then needed = oldest end
  end
  if less(needed, cut) then cut = needed end
end
return redis.call('XTRIM', key, 'MINID', cut)
";

/// `KEYS[1]` the stream; `ARGV[1]` the group, `ARGV[2]` the consumer, `ARGV[3..]` ids
/// it holds. Resets the idle time of each id the consumer still owns (`XCLAIM` to
/// itself, `JUSTID`: the delivery count stays), so other consumers do not claim what a
/// live consumer is still working on. An id another consumer claimed meanwhile is left
/// to it. Returns how many were kept.
pub(crate) const REFRESH: &str = r"
local kept = 0
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #entry == 1 and entry[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept
";
