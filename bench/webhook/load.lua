-- wrk script of bench.webhook: every request a distinct Evolution webhook (a new message id), POSTed as JSON.
--
--   wrk ... -s bench/webhook/load.lua <url> -- <body file> <id prefix> [<webhook secret>]
--
-- The body file holds the webhook with the placeholder __MESSAGE_ID__; each request replaces it with
-- <prefix><thread number, 2 hex digits><request number in this thread, 8 hex digits>, so ids never repeat within
-- a run, and the bench gives every phase its own prefix. The secret, when given, goes in X-Cecilia-Webhook-Secret.
-- At the end one line starting with BENCH_RESULT carries the numbers as JSON (latencies in microseconds).

local threads = {}

function setup(thread)
   thread:set("thread_number", #threads)
   table.insert(threads, thread)
end

local template, prefix

function init(args)
   local file = assert(io.open(args[1], "rb"))
   template = file:read("*a")
   file:close()
   prefix = args[2]
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   if args[3] ~= nil and args[3] ~= "" then
      wrk.headers["X-Cecilia-Webhook-Secret"] = args[3]
   end
   generated = 0
end

function request()
   generated = generated + 1
   local message_id = string.format("%s%02X%08X", prefix, thread_number, generated)
   local body = template:gsub("__MESSAGE_ID__", message_id, 1)
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   local total_generated = 0
   for _, thread in ipairs(threads) do
      total_generated = total_generated + (thread:get("generated") or 0)
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "generated": %d, "connect": %d, "read": %d, '
         .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
         .. '"max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, total_generated, errors.connect, errors.read, errors.write,
      errors.status, errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean
   ))
end
