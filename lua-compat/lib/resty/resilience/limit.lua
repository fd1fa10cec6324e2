-- resty.resilience.limit: request rate limits from Lua, on the zones of
-- ngx_http_ratelimit_module (ratelimit_zone), with resty.limit.req's API.
--
--   local limit = require "resty.resilience.limit"
--   local lim, err = limit.new("per_ip", 10, 20)   -- zone, rate r/s, burst
--   local delay, err = lim:incoming(ngx.var.binary_remote_addr, true)
--   if not delay then
--       if err == "rejected" then return ngx.exit(429) end
--       return ngx.exit(500)
--   end
--   if delay > 0 then ngx.sleep(delay) end
--
-- The checks run in C, in the module (LuaJIT FFI over its C ABI): the same
-- GCRA or sliding window, the same shared memory, the same fleet sync and
-- the same metrics as the "ratelimit" directive, so Lua and directive
-- limits on one zone share its budget.  See README.md, "OpenResty".

local ffi = require "ffi"
local base = require "resty.core.base"


local C = ffi.C
local ffi_new = ffi.new
local tonumber = tonumber
local tostring = tostring
local type = type
local error = error
local floor = math.floor
local abs = math.abs
local setmetatable = setmetatable
local get_request = base.get_request


ffi.cdef[[
typedef struct {
    uint64_t   milli;
    uint64_t   period;
    uint32_t   algorithm;
    uint32_t   sync;
} ngx_http_ratelimit_lua_zone_t;

typedef struct {
    int64_t    excess;
    int64_t    remaining;
    uint64_t   delay;
    uint64_t   retry;
} ngx_http_ratelimit_lua_result_t;

void *ngx_http_ratelimit_lua_zone(const unsigned char *name, size_t len,
    ngx_http_ratelimit_lua_zone_t *info);
int ngx_http_ratelimit_lua_incoming(void *zone, const unsigned char *key,
    size_t len, int64_t burst, int64_t delay, int64_t cost, int commit,
    ngx_http_ratelimit_lua_result_t *out);
int ngx_http_ratelimit_lua_uncommit(void *zone, const unsigned char *key,
    size_t len, int64_t burst, int64_t cost,
    ngx_http_ratelimit_lua_result_t *out);
int64_t ngx_http_ratelimit_lua_reset(void *zone);
]]


-- the symbols resolve only when ngx_http_ratelimit_module.so is loaded
if not pcall(function () return C.ngx_http_ratelimit_lua_incoming end) then
    error("resty.resilience.limit needs ngx_http_ratelimit_module: "
          .. "load_module modules/ngx_http_resilience_module.so and "
          .. "modules/ngx_http_ratelimit_module.so in nginx.conf", 2)
end


local NGX_OK = 0
local NGX_BUSY = -3
local NGX_DECLINED = -5

local GCRA = 0
local COST_MAX = 1000000
local BURST_MAX = 10000000

-- one call at a time per worker: the results can be shared
local info = ffi_new("ngx_http_ratelimit_lua_zone_t")
local res = ffi_new("ngx_http_ratelimit_lua_result_t")


local _M = {
    _VERSION = "0.1.0",
}

local mt = { __index = _M }


local function check_count(v, what, min, max, level)
    if type(v) ~= "number" or v ~= v or v < min or v > max then
        error(what .. " must be a number from " .. min .. " to " .. max
              .. ", got " .. tostring(v), level + 1)
    end
end


local function check_integer(v, what, min, max, level)
    check_count(v, what, min, max, level + 1)

    if v ~= floor(v) then
        error(what .. " must be a whole number, got " .. tostring(v),
              level + 1)
    end
end


local function check_rate(rate, level)
    if type(rate) ~= "number" or not (rate > 0) or rate == 1 / 0 then
        error("rate must be a positive number of requests per second, got "
              .. tostring(rate), level + 1)
    end
end


local function check_key(key, level)
    local t = type(key)

    if t == "string" then
        return key
    end

    if t == "number" then
        return tostring(key)
    end

    error("key must be a string, got " .. t, level + 1)
end


local sync_names = { [0] = "local", "redis", "strict" }

-- the zones this worker has looked up: their addresses last as long as
-- the worker (a reload starts new workers, with new Lua VMs)
local zones = {}


-- the zone and its figures, for new() of this module and of .count
function _M.zone(name, level)
    local zinfo = zones[name]

    if zinfo then
        return zinfo.zone, zinfo
    end

    level = (level or 1) + 1

    if type(name) ~= "string" then
        error("zone name must be a string, got " .. type(name), level)
    end

    if get_request() == nil then
        error("ratelimit zones are not ready in init_by_lua: call new() "
              .. "in init_worker_by_lua or in a request", level)
    end

    local z = C.ngx_http_ratelimit_lua_zone(name, #name, info)

    if z == nil then
        return nil, 'ratelimit_zone "' .. name .. '" not found'
    end

    zinfo = {
        zone = z,
        -- the zone's rate in requests per second, and its period in s
        rate = tonumber(info.milli) / tonumber(info.period),
        milli = tonumber(info.milli),
        period = tonumber(info.period) / 1000,
        algorithm = tonumber(info.algorithm) == GCRA and "gcra"
                    or "sliding_window",
        sync = sync_names[tonumber(info.sync)],
        gcra = tonumber(info.algorithm) == GCRA,
    }

    zones[name] = zinfo

    return z, zinfo
end


-- reset(zone): forgets every key of the zone (on this instance; charges
-- not yet synced to Redis included), as ngx.shared.<dict>:flush_all()
-- does for lua-resty-limit-traffic: the one line a suite written for the
-- original changes.  Returns the count of keys forgotten, or nil and an
-- error.
function _M.reset(name)
    local z, err = _M.zone(name, 2)

    if not z then
        return nil, err
    end

    local n = C.ngx_http_ratelimit_lua_reset(z)

    if n < 0 then
        return nil, "ratelimit_zone \"" .. name .. "\" not ready"
    end

    return tonumber(n)
end

_M.flush_all = _M.reset


-- new(zone, rate, burst [, opts]): rate in requests per second must be
-- the zone's (nil takes it); opts.nodelay, or opts.delay = N requests
-- passed without delay (the directive's delay=); resty.limit.req delays
-- every request over the rate, as here by default.
function _M.new(zone, rate, burst, opts)
    local z, zinfo = _M.zone(zone, 2)

    if not z then
        return nil, zinfo
    end

    if rate ~= nil then
        check_rate(rate, 2)

        if abs(rate - zinfo.rate) > 1e-9 * zinfo.rate then
            return nil, 'ratelimit_zone "' .. zone .. '" has rate '
                        .. zinfo.rate .. " r/s, not " .. rate
        end
    end

    burst = burst or 0
    check_integer(burst, "burst", 0, BURST_MAX, 2)

    local delay = 0

    if opts ~= nil then
        if type(opts) ~= "table" then
            error("opts must be a table, got " .. type(opts), 2)
        end

        if opts.nodelay then
            if opts.delay ~= nil then
                error("opts.nodelay and opts.delay exclude each other", 2)
            end

            delay = -1

        elseif opts.delay ~= nil then
            check_integer(opts.delay, "opts.delay", 0, BURST_MAX, 2)
            delay = opts.delay
        end
    end

    local self = {
        zone = z,
        name = zone,
        rate = zinfo.rate,
        burst = burst,
        delay = delay,
        gcra = zinfo.gcra,
    }

    setmetatable(self, mt)

    return self
end


local function check_self(self, method, level)
    if type(self) ~= "table" or self.zone == nil then
        error("use lim:" .. method .. "(...), not lim." .. method
              .. "(...)", (level or 2) + 1)
    end
end


-- the key and the cost of incoming() and uncommit(), checked
local function call_args(self, method, key, cost)
    check_self(self, method, 3)
    key = check_key(key, 3)

    if cost == nil then
        return key, 1
    end

    check_integer(cost, "cost", 0, COST_MAX, 3)

    return key, cost
end


-- incoming(key, commit [, cost]): resty.limit.req's contract: the delay in
-- seconds (0 when none) and the excess in requests; nil, "rejected"
function _M.incoming(self, key, commit, cost)
    key, cost = call_args(self, "incoming", key, cost)

    local rc = C.ngx_http_ratelimit_lua_incoming(self.zone, key, #key,
                                                 self.burst, self.delay,
                                                 cost, commit and 1 or 0,
                                                 res)

    if rc == NGX_OK then
        local excess = 0

        if self.gcra and res.excess > 0 then
            excess = tonumber(res.excess) / 1000
        end

        return tonumber(res.delay) / 1000, excess
    end

    if rc == NGX_BUSY then
        return nil, "rejected"
    end

    return nil, "ratelimit_zone \"" .. self.name .. "\": incoming failed"
end


-- uncommit(key [, cost]): gives a committed request back; true, or
-- nil, "not found"
function _M.uncommit(self, key, cost)
    key, cost = call_args(self, "uncommit", key, cost)

    local rc = C.ngx_http_ratelimit_lua_uncommit(self.zone, key, #key,
                                                 self.burst, cost, res)

    if rc == NGX_OK then
        return true
    end

    if rc == NGX_DECLINED then
        return nil, "not found"
    end

    return nil, "ratelimit_zone \"" .. self.name .. "\": uncommit failed"
end


-- the requests the key had left after this worker's last incoming() or
-- uncommit() (resty.resilience.limit.count returns it)
function _M.remaining()
    return tonumber(res.remaining)
end


function _M.set_burst(self, burst)
    check_self(self, "set_burst")
    check_integer(burst, "burst", 0, BURST_MAX, 2)
    self.burst = burst
end


-- the rate belongs to the zone (shared with its directives)
function _M.set_rate(self, rate)
    check_self(self, "set_rate")
    check_rate(rate, 2)

    if abs(rate - self.rate) > 1e-9 * self.rate then
        error('the rate belongs to ratelimit_zone "' .. self.name .. '" ('
              .. self.rate .. " r/s): change it in nginx.conf", 2)
    end
end


return _M
