-- wrk script: web chat webhooks with a unique, random message id each (no duplicates), as the
-- page makes them, spread over 100 visitors (so 100 conversations). Random ids matter: the
-- dedupe indexes pay for random inserts, which sequential ids would hide.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local visitor = counter % 100
  local id = string.format("%08x%08x-%d-%d", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), tid, counter)
  local body = string.format('{"id":"%s","text":"What are your opening hours?"}', id)
  local headers = {}
  headers["content-type"] = "application/json"
  headers["x-webchat-key"] = string.format("bench-visitor-%03d-0123456789abcdef", visitor)
  return wrk.format("POST", "/webhooks/web", headers, body)
end
