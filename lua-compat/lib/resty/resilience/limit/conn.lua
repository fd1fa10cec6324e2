-- resty.resilience.limit.conn: requests in flight per key, counted in a
-- ratelimit_zone of ngx_http_ratelimit_module (all workers together),
-- with resty.limit.conn's API.
--
--   local conn = require "resty.resilience.limit.conn"
--   local lim, err = conn.new("conns", 200, 100, 0.5)  -- max, burst, delay
--   local delay, c = lim:incoming(ngx.var.binary_remote_addr, true)
--   if not delay then
--       if c == "rejected" then return ngx.exit(503) end
--       return ngx.exit(500)
--   end
--   if lim:is_committed() then
--       ngx.ctx.limit_conn, ngx.ctx.limit_conn_key = lim, key
--   end
--   if delay >= 0.001 then ngx.sleep(delay) end
--   -- log_by_lua: ngx.ctx.limit_conn:leaving(ngx.ctx.limit_conn_key,
--   --                                         latency)
--
-- Any ratelimit_zone holds the counts (its key=, rate= and algorithm=
-- serve its directives, not this); a dedicated zone keeps them apart.
-- The count lives in the zone's node for the key, which is not evicted
-- while requests are in flight.  One C call per incoming() / leaving(),
-- under the zone's lock: no race between workers.

local ffi = require "ffi"
local limit = require "resty.resilience.limit"


local C = ffi.C
local ffi_new = ffi.new
local type = type
local tostring = tostring
local tonumber = tonumber
local error = error
local floor = math.floor
local setmetatable = setmetatable


ffi.cdef[[
int ngx_http_ratelimit_lua_conn(void *zone, const unsigned char *key,
    size_t len, int delta, int64_t limit, int64_t *conns);
]]


local NGX_OK = 0
local NGX_BUSY = -3
local NGX_DECLINED = -5

local conns = ffi_new("int64_t[1]")


local _M = {
    _VERSION = limit._VERSION,
}

local mt = { __index = _M }


local function check_number(v, what, min, level)
    if type(v) ~= "number" or v ~= v or v < min or v == math.huge then
        error(what .. " must be a number >= " .. min .. ", got "
              .. tostring(v), level + 1)
    end
end


-- new(zone, max, burst, default_conn_delay): as resty.limit.conn.new,
-- the zone a ratelimit_zone's name instead of a lua_shared_dict's
function _M.new(zone, max, burst, default_conn_delay)
    check_number(max, "max", 1, 2)
    check_number(burst, "burst", 0, 2)
    check_number(default_conn_delay, "default_conn_delay", 0, 2)

    if max ~= floor(max) or burst ~= floor(burst) then
        error("max and burst must be whole numbers", 2)
    end

    local z, err = limit.zone(zone, 2)

    if not z then
        return nil, err
    end

    return setmetatable({
        zone = z,
        max = max,
        burst = burst,
        unit_delay = default_conn_delay,
        committed = false,
    }, mt)
end


local function check_call(self, method, key)
    if type(self) ~= "table" or self.zone == nil then
        error("use lim:" .. method .. "(...), not lim." .. method
              .. "(...)", 3)
    end

    if type(key) ~= "string" or #key == 0 then
        error("the key must be a non-empty string, got "
              .. (type(key) == "string" and "an empty one" or type(key)), 3)
    end
end


-- incoming(key, commit): delay (s) and the count in flight with this
-- request; nil, "rejected" above max + burst
function _M.incoming(self, key, commit)
    check_call(self, "incoming", key)

    self.committed = false

    local rc = C.ngx_http_ratelimit_lua_conn(self.zone, key, #key,
                                             commit and 1 or 0,
                                             self.max + self.burst, conns)

    if rc == NGX_BUSY then
        return nil, "rejected"
    end

    if rc == NGX_DECLINED then
        -- no memory for the key in the zone: not limited, as the directive
        return 0, 1
    end

    if rc ~= NGX_OK then
        return nil, "ratelimit zone error"
    end

    if commit then
        self.committed = true
    end

    local conn = tonumber(conns[0])

    if conn > self.max then
        -- the requests beyond max wait, a unit of delay per max of them
        return self.unit_delay * floor((conn - 1) / self.max), conn
    end

    return 0, conn
end


function _M.is_committed(self)
    return self.committed
end


-- leaving(key, req_latency): the count left; the latency, when given,
-- moves the unit of delay halfway towards it
function _M.leaving(self, key, req_latency)
    check_call(self, "leaving", key)

    local rc = C.ngx_http_ratelimit_lua_conn(self.zone, key, #key, -1, 0,
                                             conns)

    if rc == NGX_DECLINED then
        return nil, "not found"
    end

    if rc ~= NGX_OK then
        return nil, "ratelimit zone error"
    end

    if req_latency then
        check_number(req_latency, "req_latency", 0, 2)
        self.unit_delay = (req_latency + self.unit_delay) / 2
    end

    return tonumber(conns[0])
end


-- uncommit(key): gives the place back, the count left
function _M.uncommit(self, key)
    check_call(self, "uncommit", key)

    local rc = C.ngx_http_ratelimit_lua_conn(self.zone, key, #key, -1, 0,
                                             conns)

    if rc == NGX_DECLINED then
        return nil, "not found"
    end

    if rc ~= NGX_OK then
        return nil, "ratelimit zone error"
    end

    return tonumber(conns[0])
end


function _M.set_conn(self, conn)
    check_number(conn, "conn", 1, 2)
    self.max = conn
end


function _M.set_burst(self, burst)
    check_number(burst, "burst", 0, 2)
    self.burst = burst
end


return _M
