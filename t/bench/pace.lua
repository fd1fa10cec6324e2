-- wrk script: a fixed request rate, for t/bench/accuracy.sh.
--
--   wrk -t1 -c4 -d10s -s t/bench/pace.lua http://127.0.0.1:PORT/ok.txt -- 400
--
-- wrk has no rate option; its delay() hook holds each request back.  Here
-- every request takes the next slot of one grid, 1000/rate ms apart (per
-- wrk thread: use -t1), and whichever connection is free sends it, so
-- the rate does not depend on the response time as long as there are
-- enough connections (a few, on a loopback).  wrk waits whole
-- milliseconds: a request may go up to 1 ms early, never drifting, since
-- the grid does not move.  LuaJIT's ffi reads the monotonic clock.

local ffi = require("ffi")

ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } nr_pace_timespec;
int clock_gettime(int clk_id, nr_pace_timespec *tp);
]]

local CLOCK_MONOTONIC = 1
local ts = ffi.new("nr_pace_timespec")

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval
local slot

function init(args)
    local rate = tonumber(args[1])

    if rate == nil or rate <= 0 then
        error("pace.lua: give the rate in requests per second: -- <rate>")
    end

    interval = 1000 / rate
end

function delay()
    local now = now_ms()

    if slot == nil then
        slot = now
    end

    slot = slot + interval

    local d = slot - now

    if d < 1 then
        return 0
    end

    return math.floor(d)
end
