-- wrk script: web chat webhooks with a unique message id each (no duplicates), spread over
-- 100 visitors (so 100 conversations).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = string.format("bench-%d-%d", os.time(), tid)
end

function request()
  counter = counter + 1
  local visitor = counter % 100
  local body = string.format('{"id":"%s-%d","text":"What are your opening hours?"}', prefix, counter)
  local headers = {}
  headers["content-type"] = "application/json"
  headers["x-webchat-key"] = string.format("bench-visitor-%03d-0123456789abcdef", visitor)
  return wrk.format("POST", "/webhooks/web", headers, body)
end
