-- Concierge's store operations on Redis. Every call runs one operation atomically:
--   EVALSHA <sha> 0 <prefix> <op> <json arguments>
-- Keys are built here from the prefix (a single Redis server: Cluster is not supported).
-- Numbers travel as JSON numbers (milliseconds and sequence numbers fit a double exactly) and
-- are written back as integers with `s()`. Results are flat arrays of strings.

local P = ARGV[1] .. ':'
local op = ARGV[2]
local a = cjson.decode(ARGV[3])
local NULL = cjson.null
local GROUP = 'workers'
local WEEK_MS = 7 * 24 * 3600 * 1000
-- The audit log keeps the newest records only.
local AUDIT_CAP = 100000
-- Message directions as the gateway stores them (JSON strings).
local INBOUND, OUTBOUND = '"inbound"', '"outbound"'

local function nn(x)
  if x == NULL then return nil end
  return x
end

local function s(n)
  if n == nil or n == NULL then return nil end
  if type(n) == 'number' then return string.format('%d', n) end
  return n
end

local function k(...)
  return P .. table.concat({...}, ':')
end

local function hget(key, field)
  local v = redis.call('HGET', key, field)
  if v == false then return nil end
  return v
end

local function hnum(key, field)
  local v = hget(key, field)
  if v == nil then return nil end
  return tonumber(v)
end

-- HSET of the fields whose values are not nil.
local function hset(key, fields)
  local args = {}
  for f, v in pairs(fields) do
    v = nn(v)
    if v ~= nil then
      args[#args + 1] = f
      args[#args + 1] = s(v)
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function next_seq(name)
  return redis.call('HINCRBY', k('seq'), name, 1)
end

-- Conversations and their thread state ---------------------------------------------------

local function set_thread(conv, thread)
  redis.call('HSET', k('conv', conv), 'thread', thread.json, 'state', thread.state, 'bot', thread.bot)
  if thread.state == 'queued' or thread.state == 'human' then
    redis.call('SADD', k('held'), conv)
  else
    redis.call('SREM', k('held'), conv)
  end
end

local function upsert_conversation(ch, contact, conv, part, now, name, initial)
  local ck = k('contact', ch, contact)
  redis.call('HSETNX', ck, 'created', s(now))
  redis.call('HSET', ck, 'updated', s(now))
  if nn(name) then redis.call('HSET', ck, 'name', name) end
  local key = k('conv', conv)
  if redis.call('EXISTS', key) == 0 then
    hset(key, {ch = ch, contact = contact, created = now, last = now, part = part})
    set_thread(conv, initial)
  else
    local last = hnum(key, 'last') or 0
    if now > last then redis.call('HSET', key, 'last', s(now)) end
  end
end

-- Messages ---------------------------------------------------------------------------

local function insert_message(m)
  local key = k('msg', m.id)
  if redis.call('EXISTS', key) == 1 then return false end
  local seq = next_seq('msg')
  hset(key, {
    seq = seq, conv = m.conv, ch = m.ch, contact = m.contact, pid = m.pid, dir = m.dir,
    author = m.author, content = m.content, reply_to = m.reply_to, at = m.at,
    status = m.status, rank = m.rank, reengage = m.reengage,
  })
  redis.call('ZADD', k('msgs', m.conv), seq, m.id)
  if nn(m.pid) then redis.call('SET', k('pmid', m.ch, m.pid), m.id, 'NX') end
  return true
end

local function set_status(msg, status, rank)
  local key = k('msg', msg)
  local current = hnum(key, 'rank')
  if current == nil or current >= rank then return false end
  redis.call('HSET', key, 'status', status, 'rank', s(rank))
  return true
end

local function apply_status(ch, pid, status, rank)
  local msg = redis.call('GET', k('pmid', ch, pid))
  if msg == false then return false end
  return set_status(msg, status, rank)
end

local function apply_early_statuses(ch, pid)
  local key = k('early', ch, pid)
  local all = redis.call('HGETALL', key)
  local ranks = {}
  for i = 1, #all, 2 do ranks[#ranks + 1] = tonumber(all[i]) end
  table.sort(ranks)
  for _, rank in ipairs(ranks) do
    apply_status(ch, pid, redis.call('HGET', key, s(rank)), rank)
  end
  redis.call('DEL', key)
end

-- The outbox -------------------------------------------------------------------------

-- Puts the due time of a conversation's outbox head in the due set (or takes it out).
local function refresh_due(conv)
  local head = redis.call('ZRANGE', k('obq', conv), 0, 0)[1]
  if head == nil then
    redis.call('ZREM', k('due'), conv)
    return
  end
  local key = k('ob', head)
  local at
  if hget(key, 'state') == 'sending' then at = hnum(key, 'lease') else at = hnum(key, 'next') end
  redis.call('ZADD', k('due'), at or 0, conv)
end

-- The entry is no longer leased by its instance.
local function unlease(key, conv)
  local owner = hget(key, 'owner')
  if owner then redis.call('SREM', k('leases', owner), conv) end
  redis.call('HDEL', key, 'lease', 'owner')
end

-- A dead instance's sends in flight are due again at once (marked maybe sent when claimed),
-- instead of after their delivery lease.
local function release_sending(owner, now)
  local set = k('leases', owner)
  for _, conv in ipairs(redis.call('SMEMBERS', set)) do
    local head = redis.call('ZRANGE', k('obq', conv), 0, 0)[1]
    if head then
      local key = k('ob', head)
      if hget(key, 'state') == 'sending' and hget(key, 'owner') == owner then
        redis.call('ZADD', k('due'), now, conv)
      end
    end
  end
  redis.call('DEL', set)
end

-- An entry leaves the open outbox (sent, failed, cancelled); its bookkeeping expires later.
local function finish_open(id, conv)
  redis.call('ZREM', k('obq', conv), id)
  refresh_due(conv)
  local key = k('ob', id)
  local idem = hget(key, 'key')
  redis.call('PEXPIRE', key, WEEK_MS)
  if idem then redis.call('PEXPIRE', k('obkey', idem), WEEK_MS) end
end

-- Queues one reply with its message; nil when its idempotency key was used already.
local function queue_reply(conv, ch, contact, r, now, pending)
  if redis.call('EXISTS', k('obkey', r.key)) == 1 then return nil end
  local id = next_seq('outbox')
  redis.call('SET', k('obkey', r.key), s(id))
  hset(k('ob', id), {
    key = r.key, msg = r.id, conv = conv, state = 'pending', attempts = 0, next = now,
    created = now, reengage = r.reengage and '1' or '0', agent = r.agent and '1' or '0',
  })
  insert_message({
    id = r.id, conv = conv, ch = ch, contact = contact, dir = OUTBOUND, author = r.author,
    content = r.content, reply_to = r.reply_to, at = now, status = pending.status,
    rank = pending.rank, reengage = r.reengage and '1' or nil,
  })
  redis.call('ZADD', k('obq', conv), id, s(id))
  refresh_due(conv)
  return r.id
end

local function cancel_agent_replies(conv, now, cancel)
  for _, id in ipairs(redis.call('ZRANGE', k('obq', conv), 0, -1)) do
    local key = k('ob', id)
    if hget(key, 'state') == 'pending' and hget(key, 'agent') == '1' then
      redis.call('HSET', key, 'state', 'failed', 'finished', s(now), 'err', cancel.reason)
      set_status(hget(key, 'msg'), cancel.status, cancel.rank)
      finish_open(id, conv)
    end
  end
end

-- Notes, handoffs, audit -------------------------------------------------------------

local function add_note(conv, note, now)
  local seq = next_seq('note')
  redis.call('RPUSH', k('notes', conv), cjson.encode({
    seq = seq, author = note.author, body = note.body, at = now,
  }))
end

local function add_audit(entry, now)
  local seq = next_seq('audit')
  redis.call('LPUSH', k('audit'), cjson.encode({
    seq = seq, at = now, actor = entry.actor, action = entry.action,
    conversation = nn(entry.conversation), detail = entry.detail,
  }))
  redis.call('LTRIM', k('audit'), 0, AUDIT_CAP - 1)
end

local function close_handoff(id, now, outcome, note)
  local key = k('ho', id)
  if redis.call('EXISTS', key) == 0 or hget(key, 'closed') then return end
  hset(key, {closed = now, outcome = outcome, note = note})
  redis.call('HDEL', key, 'offered_to', 'offer_until')
  redis.call('ZREM', k('sla'), id)
end

local function insert_handoff(conv, h, now)
  local ckey = k('conv', conv)
  local open = hget(ckey, 'ho')
  -- A new request replaces one still open (a thread is in the queue once).
  if open and open ~= h.id then close_handoff(open, now, 'superseded', nil) end
  local key = k('ho', h.id)
  if redis.call('EXISTS', key) == 0 then
    hset(key, {
      id = h.id, conv = conv, reason = h.reason, priority = h.priority, team = h.team,
      by = h.requested_by, created = now, brief = h.brief, sla = h.sla_due_at,
    })
    redis.call('RPUSH', k('hos', conv), h.id)
    if nn(h.sla_due_at) then redis.call('ZADD', k('sla'), h.sla_due_at, h.id) end
  end
  redis.call('HSET', ckey, 'ho', h.id)
end

local function open_handoff(conv)
  local id = hget(k('conv', conv), 'ho')
  if id == nil then return nil end
  if hget(k('ho', id), 'closed') then return nil end
  return id
end

-- The inbox --------------------------------------------------------------------------

local function finish_event(seq)
  local key = k('ev', seq)
  local part, xid = hget(key, 'part'), hget(key, 'xid')
  if part and xid then
    redis.call('XACK', k('in', part), GROUP, xid)
    redis.call('XDEL', k('in', part), xid)
  end
  redis.call('DEL', key)
  redis.call('ZREM', k('open'), seq)
end

local function append_event(cand, now, msg)
  local seq = next_seq('inbox')
  local xid = redis.call('XADD', k('in', cand.part), '*', 'seq', s(seq))
  hset(k('ev', seq), {
    conv = cand.conv, event = cand.event, msg = msg, at = now, part = cand.part, xid = xid,
  })
  redis.call('ZADD', k('open'), seq, s(seq))
  redis.call('PUBLISH', k('wake'), s(cand.part))
  return seq
end

-- Operations -------------------------------------------------------------------------

local ops = {}

-- Appends a webhook's events. Each event comes with candidate contacts (its own id, its
-- aliases, and any contact those are known aliases of), each with its conversation,
-- partition and the event as stored under that contact. `retry` when the contact resolved
-- to one the caller did not offer (an alias recorded meanwhile). Answers the counts, then
-- the seq and conversation of each inbox entry appended.
function ops.ingest()
  local now = a.now
  local accepted, duplicates = 0, 0
  local appended = {}
  -- First resolve every event, as if the ones before it were written (aliases and contacts
  -- it would create), and ask for a retry before writing anything.
  local aliases, contacts, seen, plan = {}, {}, {}, {}
  for i, ev in ipairs(a.events) do
    local dk = k('dedupe', ev.ch, ev.eid)
    if seen[dk] or redis.call('EXISTS', dk) == 1 then
      plan[i] = false
    else
      seen[dk] = true
      local function alias_of(id)
        local key = k('alias', ev.ch, id)
        if aliases[key] then return aliases[key] end
        local found = redis.call('GET', key)
        if found == false then return nil end
        return found
      end
      local function is_contact(id)
        local key = k('contact', ev.ch, id)
        return contacts[key] or redis.call('EXISTS', key) == 1
      end
      -- The contact the ids stand for: a known alias; else an id we hold as a contact
      -- (only when the event names several); else the event's own.
      local canon
      for j = 1, ev.own do
        canon = alias_of(ev.cands[j].id)
        if canon then break end
      end
      if canon == nil and ev.own > 1 then
        for j = 1, ev.own do
          if is_contact(ev.cands[j].id) then
            canon = ev.cands[j].id
            break
          end
        end
      end
      canon = canon or ev.cands[1].id
      local cand
      for _, c in ipairs(ev.cands) do
        if c.id == canon then cand = c end
      end
      if cand == nil then return {'retry'} end
      -- A conversation stored before ids were keyed keeps its id (and its partition).
      if cand.legacy and cand.conv ~= cand.legacy
        and redis.call('EXISTS', k('conv', cand.legacy)) == 1 then
        cand.conv, cand.part = cand.legacy, cand.legacy_part
      end
      for j = 1, ev.own do
        local id = ev.cands[j].id
        if id ~= canon and alias_of(id) == nil then aliases[k('alias', ev.ch, id)] = canon end
      end
      if ev.kind ~= 'status' then contacts[k('contact', ev.ch, canon)] = true end
      plan[i] = {canon = canon, cand = cand}
    end
  end
  -- The conversations of the events new by id: the raw webhook is kept if there is one.
  local convs, conv_seen = {}, {}
  for i, ev in ipairs(a.events) do
    local p = plan[i]
    if not p then
      duplicates = duplicates + 1
    else
      local canon, cand, dk = p.canon, p.cand, k('dedupe', ev.ch, ev.eid)
      if not conv_seen[cand.conv] then
        conv_seen[cand.conv] = true
        convs[#convs + 1] = cand.conv
      end
      for j = 1, ev.own do
        local id = ev.cands[j].id
        if id ~= canon then redis.call('SET', k('alias', ev.ch, id), canon, 'NX') end
      end
      redis.call('SET', dk, '1', 'PX', a.dedupe_ms)
      accepted = accepted + 1
      if ev.kind == 'status' then
        if not apply_status(ev.ch, ev.target, ev.status, ev.rank)
          and redis.call('EXISTS', k('pmid', ev.ch, ev.target)) == 0 then
          -- The send it describes is not recorded yet: kept for mark_sent, for a week.
          local ek = k('early', ev.ch, ev.target)
          redis.call('HSETNX', ek, s(ev.rank), ev.status)
          redis.call('PEXPIRE', ek, WEEK_MS)
        end
      else
        upsert_conversation(ev.ch, canon, cand.conv, cand.part, now, ev.name, a.initial)
        if ev.kind == 'message' then
          if redis.call('EXISTS', k('pmid', ev.ch, ev.pid)) == 1 then
            -- The same message under another event id: recorded, not answered twice.
            accepted = accepted - 1
            duplicates = duplicates + 1
          else
            insert_message({
              id = ev.msg, conv = cand.conv, ch = ev.ch, contact = canon, pid = ev.pid,
              dir = INBOUND, author = ev.author, content = ev.content, reply_to = ev.reply_to,
              at = ev.at, status = ev.status, rank = ev.rank,
            })
            local ckey = k('conv', cand.conv)
            local last_in = hnum(ckey, 'last_in') or 0
            if ev.customer and ev.at >= last_in then
              redis.call('HSET', ckey, 'last_in', s(ev.at), 'last_in_msg', ev.msg)
            end
            local seq = append_event(cand, now, ev.msg)
            table.insert(appended, s(seq))
            table.insert(appended, cand.conv)
          end
        else
          if ev.kind == 'contact_changed' or ev.kind == 'identity_changed' then
            -- Applied now, no turn: the conversation follows the new number (its contact
            -- hash, which holds the name, stays the person's), and concierges get a note.
            local ckey = k('conv', cand.conv)
            if ev.kind == 'contact_changed' and hget(ckey, 'contact') == ev.previous then
              redis.call('HSET', ckey, 'contact', ev.address)
              redis.call('HSETNX', ckey, 'person', canon)
            end
            add_note(cand.conv, {author = ev.ch, body = ev.note}, now)
          elseif ev.kind == 'started' and nn(ev.source) then
            redis.call('HSET', k('conv', cand.conv), 'source', ev.source)
          elseif ev.kind == 'edit' then
            local msg = redis.call('GET', k('pmid', ev.ch, ev.target))
            if msg ~= false and hget(k('msg', msg), 'dir') == INBOUND then
              redis.call('HSET', k('msg', msg), 'content', ev.content)
            end
          end
          if ev.kind ~= 'contact_changed' and ev.kind ~= 'identity_changed' then
            local seq = append_event(cand, now, nil)
            table.insert(appended, s(seq))
            table.insert(appended, cand.conv)
          end
        end
      end
    end
  end
  -- Faults of a channel itself: on the channel's health record, once each, for 30 days.
  local alone = a.alone
  for _, f in ipairs(a.faults) do
    local dk = k('dedupe', f.ch, f.eid)
    if redis.call('SET', dk, '1', 'PX', a.dedupe_ms, 'NX') then
      local fk = k('faults', f.ch)
      redis.call('LPUSH', fk, f.fault)
      redis.call('LTRIM', fk, 0, a.faults_kept - 1)
      redis.call('PEXPIRE', fk, a.faults_ms)
      redis.call('SADD', k('faulted'), f.ch)
      accepted = accepted + 1
      alone = true
    else
      duplicates = duplicates + 1
    end
  end
  local raw = nn(a.raw)
  if raw and (#convs > 0 or alone) then
    -- The webhook's raw request, once, trimmed and expiring with the dedupe window; `alone`:
    -- a webhook of no event, kept to no conversation.
    local key = k('raw')
    local add = {'XADD', key, 'MINID', '~', s(now - a.dedupe_ms), '*',
      'ch', raw.ch, 'kind', raw.kind, 'at', s(raw.at), 'convs', table.concat(convs, ' '),
      'headers', raw.headers}
    if nn(raw.query) then
      add[#add + 1] = 'query'
      add[#add + 1] = raw.query
    end
    if nn(raw.body) then
      add[#add + 1] = 'body'
      add[#add + 1] = raw.body
    else
      add[#add + 1] = 'body64'
      add[#add + 1] = raw.body64
    end
    redis.call(unpack(add))
    redis.call('PEXPIRE', key, a.dedupe_ms)
  end
  local answer = {'ok', s(accepted), s(duplicates)}
  for _, v in ipairs(appended) do table.insert(answer, v) end
  return answer
end

-- Marks an inbox event (and the ones it absorbed) done with everything its turn decided.
function ops.complete()
  local seq = a.seq
  local conv = hget(k('ev', seq), 'conv')
  if a.fenced and (conv == nil or hget(k('ev', seq), 'xid') ~= a.xid) then
    -- Done meanwhile, or (after Redis lost writes) the number now names another event.
    return {'done'}
  end
  if conv == nil then
    local last = tonumber(redis.call('HGET', k('seq'), 'inbox') or '0')
    if seq <= last then return {'done'} end
    return {'missing'}
  end
  if a.fenced then
    -- Fencing: only the instance holding the event's partition now may complete it.
    local part = hget(k('ev', seq), 'part')
    if part and redis.call('GET', k('lease', part)) ~= a.owner then return {'moved'} end
  end
  local now = a.now
  local ckey = k('conv', conv)
  local changed, refused, queued = '0', 0, {}
  local thread = hget(ckey, 'thread')
  if thread then
    local bot = hget(ckey, 'bot') == '1'
    local change = nn(a.thread)
    if change and change.from == thread then
      if change.to.json ~= thread then set_thread(conv, change.to) end
      changed = '1'
      if nn(a.handoff) then insert_handoff(conv, a.handoff, now) end
    end
    for _, note in ipairs(a.notes) do add_note(conv, note, now) end
    local usage = nn(a.usage)
    if usage then
      local uk = k('usage', conv)
      redis.call('HINCRBY', uk, 'in', usage.input_tokens)
      redis.call('HINCRBY', uk, 'out', usage.output_tokens)
      redis.call('HINCRBY', uk, 'calls', usage.llm_calls)
      -- And by time, for the rolling token budget: one member per turn, kept a week.
      local lk = k('usage_log', conv)
      redis.call('ZADD', lk, now, s(seq) .. ':' .. s(usage.input_tokens) .. ':'
        .. s(usage.output_tokens) .. ':' .. s(usage.llm_calls))
      redis.call('ZREMRANGEBYSCORE', lk, '-inf', '(' .. s(now - WEEK_MS))
      redis.call('PEXPIRE', lk, WEEK_MS)
    end
    local ch, contact = hget(ckey, 'ch'), hget(ckey, 'contact')
    for _, r in ipairs(a.replies) do
      if r.automated and not bot then
        refused = refused + 1
      else
        local id = queue_reply(conv, ch, contact, r, now, a.pending)
        if id then queued[#queued + 1] = id end
      end
    end
  end
  for _, other in ipairs(a.absorbed) do
    -- Only events of the same conversation: a caller's mistake cannot close another's work.
    if hget(k('ev', other), 'conv') == conv then finish_event(other) end
  end
  finish_event(seq)
  local out = {'ok', changed, s(refused)}
  for _, id in ipairs(queued) do out[#out + 1] = id end
  return out
end

-- Hands out the heads of the conversations whose outbox is due, each for a lease.
function ops.claim_due()
  local now = a.now
  local out = {}
  local heads = redis.call('ZRANGEBYSCORE', k('due'), '-inf', now, 'LIMIT', 0, a.limit)
  for _, conv in ipairs(heads) do
    local id = redis.call('ZRANGE', k('obq', conv), 0, 0)[1]
    if id == nil then
      redis.call('ZREM', k('due'), conv)
    else
      local key = k('ob', id)
      local maybe = hget(key, 'maybe') or '0'
      if hget(key, 'state') == 'sending' then maybe = '1' end
      local attempts = redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSETNX', key, 'first', s(now))
      redis.call('HSET', key, 'state', 'sending', 'lease', s(now + a.lease), 'maybe', maybe,
        'owner', a.owner)
      redis.call('ZADD', k('due'), now + a.lease, conv)
      redis.call('SADD', k('leases', a.owner), conv)
      out[#out + 1] = id
      out[#out + 1] = hget(key, 'key')
      out[#out + 1] = hget(key, 'msg')
      out[#out + 1] = s(attempts)
      out[#out + 1] = hget(key, 'first')
      out[#out + 1] = maybe
      out[#out + 1] = hget(key, 'reengage') or '0'
    end
  end
  return out
end

-- Marks outbox entry `id` sent (with the platform's id of it when known) and applies the
-- statuses that came before; whether the entry was still open.
local function record_sent(id, pid, now, sent)
  local key = k('ob', id)
  local msg = hget(key, 'msg')
  local state = hget(key, 'state')
  local opened = state == 'pending' or state == 'sending'
  if opened then
    redis.call('HSET', key, 'state', 'sent', 'finished', s(now))
    unlease(key, hget(key, 'conv'))
    redis.call('HDEL', key, 'err')
    finish_open(id, hget(key, 'conv'))
  end
  local mkey = k('msg', msg)
  local ch = hget(mkey, 'ch')
  if pid and hget(mkey, 'pid') == nil then
    if redis.call('SET', k('pmid', ch, pid), msg, 'NX') then
      redis.call('HSET', mkey, 'pid', pid)
    end
  end
  set_status(msg, sent.status, sent.rank)
  if pid then apply_early_statuses(ch, pid) end
  return opened
end

function ops.mark_sent()
  if hget(k('ob', a.id), 'msg') == nil then return {'missing'} end
  record_sent(a.id, nn(a.pid), a.now, a.sent)
  return {'ok'}
end

-- A status report named the reply `msg`: its open entry, if any, is confirmed sent.
function ops.confirm_sent()
  local mkey = k('msg', a.msg)
  local conv = hget(mkey, 'conv')
  if conv == nil or hget(mkey, 'ch') ~= a.ch then return {'0'} end
  for _, id in ipairs(redis.call('ZRANGE', k('obq', conv), 0, -1)) do
    if hget(k('ob', id), 'msg') == a.msg then
      if record_sent(id, a.pid, a.now, a.sent) then return {'1'} end
      return {'0'}
    end
  end
  return {'0'}
end

function ops.retry_at()
  local key = k('ob', a.id)
  if hget(key, 'state') ~= 'sending' then return {'ok'} end
  redis.call('HSET', key, 'state', 'pending', 'next', s(a.at), 'err', a.error)
  unlease(key, hget(key, 'conv'))
  if a.maybe_sent then redis.call('HSET', key, 'maybe', '1') end
  refresh_due(hget(key, 'conv'))
  return {'ok'}
end

function ops.mark_failed()
  local key = k('ob', a.id)
  local state = hget(key, 'state')
  if state ~= 'pending' and state ~= 'sending' then return {'ok'} end
  redis.call('HSET', key, 'state', 'failed', 'finished', s(a.now), 'err', a.reason)
  unlease(key, hget(key, 'conv'))
  finish_open(a.id, hget(key, 'conv'))
  set_status(hget(key, 'msg'), a.failed.status, a.failed.rank)
  return {'ok'}
end

-- Gives back the leases this instance holds (its sends in flight), due again at once, but
-- those of the entries in `keep` (sends still in the worker's hands).
function ops.release_leases()
  local count = 0
  local keep = {}
  for _, id in ipairs(a.keep or {}) do keep[s(id)] = true end
  for _, conv in ipairs(redis.call('SMEMBERS', k('leases', a.owner))) do
    local id = redis.call('ZRANGE', k('obq', conv), 0, 0)[1]
    if id and not keep[id] then
      local key = k('ob', id)
      if hget(key, 'state') == 'sending' and hget(key, 'owner') == a.owner then
        redis.call('HSET', key, 'state', 'pending', 'maybe', '1')
        unlease(key, conv)
        refresh_due(conv)
        count = count + 1
      end
    end
  end
  return {s(count)}
end

-- Replaces a message's content if it is still `old` (what the caller read).
function ops.set_content()
  local key = k('msg', a.msg)
  if hget(key, 'content') ~= a.old then return {'changed'} end
  redis.call('HSET', key, 'content', a.new)
  return {'ok'}
end

function ops.set_thread()
  if redis.call('EXISTS', k('conv', a.conv)) == 0 then return {'missing'} end
  set_thread(a.conv, a.to)
  return {'ok'}
end

function ops.update_status()
  if apply_status(a.ch, a.pid, a.status, a.rank) then return {'1'} end
  return {'0'}
end

function ops.set_summary()
  local key = k('summary', a.conv)
  local upto = hnum(key, 'upto')
  if upto == nil or a.upto > upto then
    redis.call('HSET', key, 'text', a.text, 'upto', s(a.upto), 'at', s(a.now))
  end
  return {'ok'}
end

-- A thread move, applied only if the thread is still in `from`.
function ops.move_thread()
  local now = a.now
  local conv = a.conv
  local ckey = k('conv', conv)
  local thread = hget(ckey, 'thread')
  if thread == nil then return {'missing'} end
  if thread ~= a.from then return {'0'} end
  set_thread(conv, a.to)
  local change = a.handoff
  if change.kind == 'open' then
    insert_handoff(conv, change.handoff, now)
  elseif change.kind == 'close' then
    local open = open_handoff(conv)
    if open then close_handoff(open, now, change.outcome, nn(change.note)) end
    redis.call('HDEL', ckey, 'ho')
  elseif change.kind == 'requeue' then
    local open = open_handoff(conv)
    if open then
      local key = k('ho', open)
      if nn(change.team) then redis.call('HSET', key, 'team', change.team) end
      redis.call('HDEL', key, 'claimed_by', 'offered_to', 'offer_until', 'breached', 'first_resp')
      if nn(change.sla_due_at) then
        redis.call('HSET', key, 'sla', s(change.sla_due_at))
        redis.call('ZADD', k('sla'), change.sla_due_at, open)
      else
        redis.call('HDEL', key, 'sla')
        redis.call('ZREM', k('sla'), open)
      end
    end
  end
  if a.to.bot ~= '1' then cancel_agent_replies(conv, now, a.cancel) end
  if a.to.state == 'human' then
    local open = open_handoff(conv)
    if open then
      local key = k('ho', open)
      redis.call('HSET', key, 'claimed_by', a.concierge)
      redis.call('HSETNX', key, 'claimed_at', s(now))
      redis.call('HDEL', key, 'offered_to', 'offer_until')
    end
    local pkey = k('presence', a.concierge)
    if redis.call('EXISTS', pkey) == 0 then
      redis.call('HSET', pkey, 'status', 'away', 'seen', '0', 'idle', s(now))
      redis.call('SADD', k('people'), a.concierge)
    else
      redis.call('HSET', pkey, 'idle', s(now))
    end
  end
  if nn(a.note) then add_note(conv, a.note, now) end
  add_audit(a.audit, now)
  return {'1'}
end

-- A concierge's replies, queued only while they own the thread.
function ops.concierge_reply()
  local now = a.now
  local conv = a.conv
  local ckey = k('conv', conv)
  local thread = hget(ckey, 'thread')
  if thread == nil then return {'missing'} end
  -- A request whose key was used already queues nothing: its messages come back.
  local first = a.replies[1]
  if first and redis.call('EXISTS', k('obkey', first.key)) == 1 then
    local out = {'replayed'}
    for _, r in ipairs(a.replies) do
      local obid = redis.call('GET', k('obkey', r.key))
      local msg = obid and hget(k('ob', obid), 'msg')
      if msg then out[#out + 1] = msg end
    end
    return out
  end
  if thread ~= a.owner_thread then return {'no'} end
  local ch, contact = hget(ckey, 'ch'), hget(ckey, 'contact')
  local out = {'ok'}
  for _, r in ipairs(a.replies) do
    local id = queue_reply(conv, ch, contact, r, now, a.pending)
    if id then out[#out + 1] = id end
  end
  local open = open_handoff(conv)
  if open then
    if redis.call('HSETNX', k('ho', open), 'first_resp', s(now)) == 1 then
      redis.call('ZREM', k('sla'), open)
    end
  end
  add_audit(a.audit, now)
  return out
end

function ops.add_note()
  add_note(a.conv, a.note, a.now)
  add_audit(a.audit, a.now)
  return {'ok'}
end

function ops.audit()
  add_audit(a.audit, a.now)
  return {'ok'}
end

-- Open handoffs whose first-response SLA ran out: marked once, priority raised one step.
function ops.sla_breaches()
  local now = a.now
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('sla'), '-inf', now)) do
    redis.call('ZREM', k('sla'), id)
    local key = k('ho', id)
    if redis.call('EXISTS', key) == 1 and not hget(key, 'closed') and not hget(key, 'first_resp')
      and not hget(key, 'breached') then
      local priority = hget(key, 'priority') or 'normal'
      local raised = 'urgent'
      if priority == 'low' then raised = 'normal' elseif priority == 'normal' then raised = 'high' end
      redis.call('HSET', key, 'breached', s(now), 'priority', raised)
      out[#out + 1] = id
      out[#out + 1] = hget(key, 'conv')
      out[#out + 1] = hget(key, 'team') or ''
      out[#out + 1] = raised
    end
  end
  return out
end

function ops.offer()
  local key = k('ho', a.handoff)
  if redis.call('EXISTS', key) == 0 or hget(key, 'closed') or hget(key, 'claimed_by') then
    return {'0'}
  end
  local until_ = hnum(key, 'offer_until')
  if until_ and until_ > a.now then return {'0'} end
  if hget(k('conv', hget(key, 'conv')), 'state') ~= 'queued' then return {'0'} end
  redis.call('HSET', key, 'offered_to', a.concierge, 'offer_until', s(a['until']))
  return {'1'}
end

-- Deletes every token of an owner: the set of its hashes, and each hash's record.
local function revoke(set, record, owner)
  local key = k(set, owner)
  local hashes = redis.call('SMEMBERS', key)
  for _, hash in ipairs(hashes) do redis.call('DEL', k(record, hash)) end
  redis.call('DEL', key)
  return {s(#hashes)}
end

function ops.revoke_tokens()
  return revoke('tokens', 'token', a.concierge)
end

function ops.revoke_service_tokens()
  return revoke('service_tokens', 'service_token', a.service)
end

-- The consent ledger: one JSON record a decision on the contact's list; a key once.
function ops.record_consent()
  if nn(a.key) and redis.call('SET', k('consent_key', a.key), '1', 'NX') == false then
    return {'0'}
  end
  local list = k('consents', a.channel, a.contact)
  local record = cjson.decode(a.record)
  record.seq = redis.call('LLEN', list) + 1
  redis.call('RPUSH', list, cjson.encode(record))
  return {'1'}
end

-- The latest decision per purpose in a contact's ledger: granted ('1'), withdrawn ('0') or nil.
local function consent_state(ch, contact)
  local latest = {}
  for _, item in ipairs(redis.call('LRANGE', k('consents', ch, contact), 0, -1)) do
    local r = cjson.decode(item)
    latest[r.purpose] = r.granted and '1' or '0'
  end
  return latest
end

-- A notification: its key once; the consent ledger's word; then the conversation (created
-- when new), the outbox entry and the record, in this one step.
function ops.notify()
  local existing = redis.call('GET', k('notification_key', a.key))
  if existing then return {'replayed', existing} end
  local latest = consent_state(a.channel, a.contact)
  if latest.utility == '0' then return {'refused', 'opted_out'} end
  if a.purpose == 'marketing' then
    if latest.marketing == '0' then return {'refused', 'opted_out'} end
    if latest.marketing ~= '1' then return {'refused', 'no_consent'} end
  end
  upsert_conversation(a.channel, a.contact, a.conv, a.part, a.at, nil, a.initial)
  local msg = queue_reply(a.conv, a.channel, a.contact, a.reply, a.at, a.pending)
  if not msg then return {'conflict'} end
  redis.call('SET', k('notification_key', a.key), a.id)
  hset(k('notification', a.id), {
    service = a.service, ch = a.channel, contact = a.contact, conv = a.conv, msg = msg,
    purpose = a.purpose, template = nn(a.template), batch = nn(a.batch),
    batch_index = nn(a.batch_index), at = a.at,
  })
  return {'ok', a.id}
end

-- The webhook outbox ---------------------------------------------------------------------
-- A delivery is a hash `wh:<id>`; pending ones are in `wh_due` by when they may go (their
-- next attempt, or the end of the lease of one being sent); done ones in `wh_done:<state>`
-- by when they finished, kept a week.

local function webhook_json(id)
  local key = k('wh', id)
  if redis.call('EXISTS', key) == 0 then return nil end
  return cjson.encode({
    id = tonumber(id), webhook = hget(key, 'webhook'), event_id = hget(key, 'event_id'),
    event_type = hget(key, 'type'), payload = hget(key, 'payload'), state = hget(key, 'state'),
    attempts = hnum(key, 'attempts') or 0, created_at = hnum(key, 'created'),
    next_at = hnum(key, 'next'), last_error = hget(key, 'error'),
    last_status = hnum(key, 'status'), done_at = hnum(key, 'done'),
  })
end

function ops.webhook_enqueue()
  local added = 0
  for _, d in ipairs(a.deliveries) do
    local idem = k('wh_key', d.webhook, d.event_id)
    if redis.call('EXISTS', idem) == 0 then
      local id = next_seq('wh')
      redis.call('SET', idem, s(id))
      hset(k('wh', id), {
        webhook = d.webhook, event_id = d.event_id, type = d.event_type, payload = d.payload,
        state = 'pending', attempts = 0, created = d.at, next = d.at,
      })
      redis.call('ZADD', k('wh_due'), d.at, s(id))
      added = added + 1
    end
  end
  return {s(added)}
end

function ops.webhook_claim()
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('wh_due'), '-inf', a.now, 'LIMIT', 0, a.limit)) do
    local key = k('wh', id)
    if hget(key, 'state') == 'pending' then
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('ZADD', k('wh_due'), a.now + a.lease_ms, id)
      out[#out + 1] = webhook_json(id)
    else
      redis.call('ZREM', k('wh_due'), id)
    end
  end
  return out
end

-- `delivered`, `retry` (again at `at`) or `failed`.
function ops.webhook_finish()
  local id = s(a.id)
  local key = k('wh', id)
  if hget(key, 'state') ~= 'pending' then return {'0'} end
  hset(key, {status = nn(a.status)})
  if a.outcome == 'retry' then
    hset(key, {next = a.at, error = nn(a.error)})
    redis.call('ZADD', k('wh_due'), a.at, id)
    return {'1'}
  end
  redis.call('ZREM', k('wh_due'), id)
  hset(key, {state = a.outcome, done = a.now, error = nn(a.error)})
  if a.outcome == 'delivered' then redis.call('HDEL', key, 'error') end
  redis.call('PEXPIRE', key, WEEK_MS)
  redis.call('PEXPIRE', k('wh_key', hget(key, 'webhook'), hget(key, 'event_id')), WEEK_MS)
  local done = k('wh_done', a.outcome)
  redis.call('ZADD', done, a.now, id)
  redis.call('ZREMRANGEBYSCORE', done, '-inf', a.now - WEEK_MS)
  return {'1'}
end

function ops.webhook_list()
  local ids
  if a.state == 'pending' then
    ids = redis.call('ZREVRANGE', k('wh_due'), 0, a.limit - 1)
  else
    ids = redis.call('ZREVRANGE', k('wh_done', a.state), 0, a.limit - 1)
  end
  local out = {}
  for _, id in ipairs(ids) do
    local item = webhook_json(id)
    if item then out[#out + 1] = item end
  end
  return out
end

function ops.webhook_retry()
  local id = s(a.id)
  local key = k('wh', id)
  if hget(key, 'state') ~= 'failed' then return {'0'} end
  redis.call('ZREM', k('wh_done', 'failed'), id)
  hset(key, {state = 'pending', attempts = 0, next = a.now, created = a.now})
  redis.call('HDEL', key, 'done')
  redis.call('PERSIST', key)
  redis.call('PERSIST', k('wh_key', hget(key, 'webhook'), hget(key, 'event_id')))
  redis.call('ZADD', k('wh_due'), a.now, id)
  return {'1'}
end

-- Notification batches -----------------------------------------------------------------
-- A batch is a hash `batch:<id>`, its recipients the list `batch_rcpt:<id>`; running ones
-- are in `batches_running` by when they were made.

local function batch_fields(id)
  local key = k('batch', id)
  if redis.call('EXISTS', key) == 0 then return {} end
  local out = {id}
  local all = redis.call('HGETALL', key)
  for i = 1, #all do out[#out + 1] = all[i] end
  return out
end

function ops.batch_create()
  local existing = redis.call('GET', k('batch_key', a.key))
  if existing then
    local out = batch_fields(existing)
    table.insert(out, 1, 'replayed')
    return out
  end
  local key = k('batch', a.id)
  redis.call('SET', k('batch_key', a.key), a.id)
  hset(key, {
    service = a.service, ch = a.channel, template = nn(a.template), request = a.request,
    state = 'running', total = #a.recipients, next = 0, queued = 0, skipped = 0,
    reasons = '{}', created = a.at, updated = a.at,
  })
  local list = k('batch_rcpt', a.id)
  local chunk = {}
  for _, r in ipairs(a.recipients) do
    chunk[#chunk + 1] = r
    if #chunk == 1000 then redis.call('RPUSH', list, unpack(chunk)); chunk = {} end
  end
  if #chunk > 0 then redis.call('RPUSH', list, unpack(chunk)) end
  redis.call('ZADD', k('batches_running'), a.at, a.id)
  local out = batch_fields(a.id)
  table.insert(out, 1, 'ok')
  return out
end

function ops.batch_advance()
  local key = k('batch', a.id)
  if hget(key, 'state') ~= 'running' or hnum(key, 'next') ~= a.from then return {'0'} end
  local reasons = cjson.decode(hget(key, 'reasons') or '{}')
  for _, r in ipairs(a.skipped) do reasons[r] = (reasons[r] or 0) + 1 end
  redis.call('HSET', key, 'next', s(a.to), 'reasons', cjson.encode(reasons), 'updated', s(a.now))
  redis.call('HINCRBY', key, 'queued', a.queued)
  redis.call('HINCRBY', key, 'skipped', #a.skipped)
  if a.to >= hnum(key, 'total') then
    redis.call('HSET', key, 'state', 'done')
    redis.call('ZREM', k('batches_running'), a.id)
    redis.call('DEL', k('batch_rcpt', a.id))
  end
  return {'1'}
end

function ops.batch_stop()
  local key = k('batch', a.id)
  if hget(key, 'state') == 'running' then
    redis.call('HSET', key, 'state', 'stopped', 'updated', s(a.now))
    redis.call('ZREM', k('batches_running'), a.id)
    redis.call('DEL', k('batch_rcpt', a.id))
  end
  return batch_fields(a.id)
end

function ops.batch_lease()
  local key = k('batch', a.id)
  if hget(key, 'state') ~= 'running' then return {'0'} end
  local owner, until_ = hget(key, 'owner'), hnum(key, 'lease')
  if owner and owner ~= a.owner and until_ and until_ > a.now then return {'0'} end
  redis.call('HSET', key, 'owner', a.owner, 'lease', s(a['until']))
  return {'1'}
end

function ops.touch_presence()
  local key = k('presence', a.concierge)
  local exists = redis.call('EXISTS', key) == 1
  local status = nn(a.status)
  if status then
    -- Coming online starts the idle clock; staying online keeps it.
    if not exists or hget(key, 'status') ~= status then
      redis.call('HSET', key, 'idle', s(a.now))
    end
    redis.call('HSET', key, 'status', status, 'seen', s(a.now))
  elseif exists then
    redis.call('HSET', key, 'seen', s(a.now))
  else
    redis.call('HSET', key, 'status', 'online', 'seen', s(a.now), 'idle', s(a.now))
  end
  redis.call('SADD', k('people'), a.concierge)
  return {'ok'}
end

local function entry_seq(fields)
  for j = 1, #fields, 2 do
    if fields[j] == 'seq' then return fields[j + 1] end
  end
  return nil
end

-- New entries of the partitions this instance holds, each checked here, with the read:
-- `part, seq|id` pairs, and `lost, part` for a partition held by another now.
function ops.read()
  local out = {}
  for _, part in ipairs(a.parts) do
    local stream = k('in', part)
    if redis.call('GET', k('lease', part)) ~= a.owner then
      out[#out + 1] = 'lost'
      out[#out + 1] = s(part)
    else
      local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, a.owner,
        'COUNT', a.count, 'STREAMS', stream, '>')
      if not ok then
        -- The group is gone (Redis lost its data): make it again.
        pcall(redis.call, 'XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
      elseif reply then
        for _, entries in ipairs(reply) do
          for _, entry in ipairs(entries[2]) do
            local seq = entry_seq(entry[2])
            if seq then
              out[#out + 1] = s(part)
              out[#out + 1] = seq .. '|' .. entry[1]
            end
          end
        end
      end
    end
  end
  return out
end

-- Claims a held partition's pending entries (a previous holder's, or this instance's own
-- after a failed read) from `start`: the next start, then `seq|id` items. Once all are
-- claimed, consumers that left nothing pending are removed from the group.
function ops.claim()
  local stream = k('in', a.part)
  if redis.call('GET', k('lease', a.part)) ~= a.owner then return {'lost'} end
  local ok, reply = pcall(redis.call, 'XAUTOCLAIM', stream, GROUP, a.owner, 0, a.start,
    'COUNT', a.count)
  if not ok then
    pcall(redis.call, 'XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
    return {'0-0'}
  end
  local out = {reply[1]}
  for _, entry in ipairs(reply[2]) do
    if type(entry) == 'table' and type(entry[2]) == 'table' then
      local seq = entry_seq(entry[2])
      if seq then out[#out + 1] = seq .. '|' .. entry[1] end
    end
  end
  if reply[1] == '0-0' then
    local listed, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, GROUP)
    if listed then
      for _, c in ipairs(consumers) do
        local name, pending
        for j = 1, #c, 2 do
          if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then pending = c[j + 1] end
        end
        if name and name ~= a.owner and pending == 0 then
          redis.call('XGROUP', 'DELCONSUMER', stream, GROUP, name)
        end
      end
    end
  end
  return out
end

-- Inbox partitions: an instance holds a partition by a lease, and only the holder may
-- complete the partition's events (checked in `complete`).
function ops.acquire()
  local out = {}
  for _, part in ipairs(a.parts) do
    if #out >= a.max then break end
    local lease = k('lease', part)
    if redis.call('SET', lease, a.owner, 'NX', 'PX', a.ttl) then
      pcall(redis.call, 'XGROUP', 'CREATE', k('in', part), GROUP, '0', 'MKSTREAM')
      out[#out + 1] = s(part)
    end
  end
  return out
end

-- Renews the leases still held; returns the partitions lost.
function ops.renew()
  local out = {}
  -- The server's clock: instances' clocks may differ.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, part in ipairs(a.parts) do
    local lease = k('lease', part)
    if redis.call('GET', lease) == a.owner then
      redis.call('PEXPIRE', lease, a.ttl)
    else
      out[#out + 1] = s(part)
    end
  end
  redis.call('ZADD', k('instances'), now, a.owner)
  -- Instances that stopped renewing are dead: their sends in flight are due again now.
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', k('instances'), '-inf', now - a.ttl)) do
    release_sending(dead, a.now)
    redis.call('ZREM', k('instances'), dead)
  end
  out[#out + 1] = 'live'
  out[#out + 1] = s(redis.call('ZCARD', k('instances')))
  return out
end

function ops.release()
  for _, part in ipairs(a.parts) do
    local lease = k('lease', part)
    if redis.call('GET', lease) == a.owner then redis.call('DEL', lease) end
  end
  if a.leaving then redis.call('ZREM', k('instances'), a.owner) end
  return {'ok'}
end

local f = ops[op]
if f == nil then return redis.error_reply('unknown store operation ' .. tostring(op)) end
return f()
