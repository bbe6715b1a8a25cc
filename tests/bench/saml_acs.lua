-- SPDX-License-Identifier: AGPL-3.0-or-later
-- wrk script for tests/bench/saml_acs.sh: POST pre-generated SAMLResponse
-- bodies to an ACS, each body at most once.
--
-- usage: wrk -t2 -c32 -d10s --timeout 10s --latency -s saml_acs.lua URL -- \
--            BODIES_FILE NTHREADS ACS_PATH COOKIE_NAME
--
-- Thread k takes lines k, k+NTHREADS, ... of BODIES_FILE. Success = 303 with
-- a "Set-Cookie: COOKIE_NAME=..." header; any other answer is a failure
-- (status counted, the first bodies kept for the report). A thread that has
-- handed out all its bodies parks its connections (delay()) and stops once
-- every POST is answered; then the rate is taken over the time the threads were
-- actually posting ("window"), not wrk's -d, and the run is marked exhausted
-- so the caller can ask for more bodies.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } idb_timespec;
int clock_gettime(int clk, idb_timespec *ts);
]]
local ts = ffi.new("idb_timespec")
local function now()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}
local nextid = 0

function setup(thread)
   thread:set("tid", nextid)
   nextid = nextid + 1
   table.insert(threads, thread)
end

function init(args)
   local file, nthreads = args[1], tonumber(args[2])
   acs_path, cookie = args[3], args[4] .. "="
   bodies = {}
   local i = 0
   for line in io.lines(file) do
      if i % nthreads == tid then bodies[#bodies + 1] = line end
      i = i + 1
   end
   nbodies = #bodies
   idx = 0
   ok, fail, nocookie, extra, healthz, reserved = 0, 0, 0, 0, 0, 0
   exhausted = 0
   t_first, t_last = 0, 0
   codes = {}
   samples = {}
   hdrs = { ["Content-Type"] = "application/x-www-form-urlencoded" }
   verify_call = (tid == 0)
end

function delay()
   -- wrk asks delay() before every request (also a connection's first) and
   -- calls request() later, from a timer: reserve the body here, so that
   -- connections waiting on their timers never ask for more than there are.
   -- With all bodies reserved the connection is parked (600 s, longer than
   -- any run); the thread stops once every POST is answered (response()).
   if reserved >= nbodies then return 600000 end
   reserved = reserved + 1
   return 0
end

function request()
   if verify_call then
      -- wrk calls request() once on the first thread before the run to
      -- check the script: that request is never sent, so consume nothing
      verify_call = false
      return wrk.format("POST", acs_path, hdrs, bodies[1] or "")
   end
   idx = idx + 1
   if idx == 1 then t_first = now() end
   if idx > nbodies then
      -- only when wrk resends without asking delay() (a connection that
      -- broke with a request in flight): a cheap GET, never counted
      extra = extra + 1
      return wrk.format("GET", "/healthz")
   end
   if idx == nbodies then exhausted = 1 end
   return wrk.format("POST", acs_path, hdrs, bodies[idx])
end

function response(status, headers, body)
   if status == 200 then
      healthz = healthz + 1 -- a /healthz above (the ACS never answers 200)
      return
   end
   t_last = now()
   codes[status] = (codes[status] or 0) + 1
   local good = false
   if status == 303 then
      local c = headers["Set-Cookie"] or headers["set-cookie"]
      good = c ~= nil and string.find(c, cookie, 1, true) ~= nil
      if not good then nocookie = nocookie + 1 end
   end
   if good then
      ok = ok + 1
   else
      fail = fail + 1
      if #samples < 5 then
         samples[#samples + 1] = status .. " " .. string.gsub(string.sub(body or "", 1, 400), "[\r\n]", " ")
      end
   end
   if exhausted == 1 and ok + fail >= nbodies then wrk.thread:stop() end
end

function done(summary, latency, requests)
   local tok, tfail, tnoc, tbodies, tsent, texh, textra, thz = 0, 0, 0, 0, 0, 0, 0, 0
   local t0, t1 = math.huge, 0
   local allcodes, allsamples = {}, {}
   for _, t in ipairs(threads) do
      tok = tok + t:get("ok")
      tfail = tfail + t:get("fail")
      tnoc = tnoc + t:get("nocookie")
      tbodies = tbodies + t:get("nbodies")
      tsent = tsent + math.min(t:get("idx"), t:get("nbodies"))
      texh = texh + t:get("exhausted")
      textra = textra + t:get("extra")
      thz = thz + t:get("healthz")
      local a, b = t:get("t_first"), t:get("t_last")
      if a > 0 and a < t0 then t0 = a end
      if b > t1 then t1 = b end
      for k, v in pairs(t:get("codes")) do allcodes[k] = (allcodes[k] or 0) + v end
      for _, s in ipairs(t:get("samples")) do allsamples[#allsamples + 1] = s end
   end
   local secs = summary.duration / 1e6
   local window = secs
   if texh > 0 and t1 > t0 then window = t1 - t0 end
   local cs = {}
   for k, v in pairs(allcodes) do cs[#cs + 1] = k .. "=" .. v end
   table.sort(cs)
   io.write(string.format("ACS_RESULT bodies_loaded=%d posts_sent=%d success=%d failure=%d " ..
      "failure_no_cookie=%d exhausted_threads=%d after_exhaustion=%d healthz=%d unanswered=%d duration_s=%.3f window_s=%.3f " ..
      "success_per_s=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f codes=%s\n",
      tbodies, tsent, tok, tfail, tnoc, texh, textra, thz, tsent - tok - tfail, secs, window, tok / window,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, table.concat(cs, ",")))
   for _, s in ipairs(allsamples) do io.write("ACS_FAIL " .. s .. "\n") end
end
