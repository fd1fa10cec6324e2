-- resty.resilience.breaker: the circuit breakers of ngx_http_breaker_module
-- from Lua, around calls made from Lua (a cosocket, ngx.location.capture).
--
--   local breaker = require "resty.resilience.breaker"
--   local b = assert(breaker.new("orders"))          -- a "breaker orders"
--   local permit, err = b:allow()
--   if not permit then                               -- "open" or "full"
--       return ngx.exit(503)
--   end
--   local t0 = ngx.now()
--   local res, cerr = call_the_backend()
--   permit:report(res ~= nil, (ngx.now() - t0) * 1000)
--
-- allow() and report() run the module's own admission and state machine
-- (LuaJIT FFI over its C ABI) on the breaker's node in the breaker_zone:
-- Lua calls and directive-driven requests trip it, are rejected by it and
-- close it together, with the same counters, metrics, resilience_admin
-- view and, for a breaker with "breaker_shared on", the same fleet state.
-- A call evaluates with the breaker_* tuning of the location it runs in.
-- See README.md, "OpenResty".

local ffi = require "ffi"
local base = require "resty.core.base"


local C = ffi.C
local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_str = ffi.string
local get_request = base.get_request
local tonumber = tonumber
local tostring = tostring
local type = type
local error = error
local setmetatable = setmetatable
local getmetatable = getmetatable


ffi.cdef[[
typedef struct {
    uint32_t   keyed;
    uint32_t   shared;
    uint32_t   created;
    uint32_t   buckets;
} ngx_http_breaker_lua_desc_t;

typedef struct {
    uint32_t   state;
    uint32_t   generation;
    uint32_t   probe;
    uint32_t   dry_run;
    uint64_t   opaque[14];
} ngx_http_breaker_lua_permit_t;

typedef struct {
    uint32_t   state;
    uint32_t   mode;
    uint32_t   generation;
    uint32_t   trips;
    uint32_t   inflight;
    uint32_t   consecutive;
    uint64_t   open_ms;
    uint64_t   successes;
    uint64_t   failures;
    uint64_t   slow;
    uint64_t   rejected;
    uint64_t   dry_run_rejected;
    uint64_t   transitions;
} ngx_http_breaker_lua_info_t;

void *ngx_http_breaker_lua_breaker(const unsigned char *name, size_t len,
    const unsigned char *zone, size_t zone_len,
    ngx_http_breaker_lua_desc_t *desc, const char **err);
int ngx_http_breaker_lua_allow(ngx_http_request_t *r, void *breaker,
    const unsigned char *key, size_t len,
    ngx_http_breaker_lua_permit_t *permit);
int ngx_http_breaker_lua_report(ngx_http_request_t *r,
    ngx_http_breaker_lua_permit_t *permit, int outcome, int64_t latency);
void ngx_http_breaker_lua_release(ngx_http_breaker_lua_permit_t *permit);
int ngx_http_breaker_lua_state(void *breaker, const unsigned char *key,
    size_t len, ngx_http_breaker_lua_info_t *info);
int ngx_http_breaker_lua_force(ngx_http_request_t *r, void *breaker,
    int mode);
]]


if not pcall(function () return C.ngx_http_breaker_lua_allow end) then
    error("resty.resilience.breaker needs ngx_http_breaker_module: "
          .. "load_module modules/ngx_http_resilience_module.so and "
          .. "modules/ngx_http_breaker_module.so in nginx.conf", 2)
end


local ADMITTED = 0
local UNTRACKED = 1
local FULL = 3

local SUCCESS = 1
local FAILURE = 2

local states = { [0] = "closed", "open", "half_open" }
local modes = {
    default = 0, enforce = 1, dry_run = 2, force_open = 3,
    force_closed = 4, off = 5,
}
local mode_names = { [0] = "default", "enforce", "dry_run", "force_open",
                     "force_closed", "off" }

local desc = ffi_new("ngx_http_breaker_lua_desc_t")
local errp = ffi_new("const char *[1]")
local info = ffi_new("ngx_http_breaker_lua_info_t")


local _M = {
    _VERSION = "0.1.0",
}

local mt = { __index = _M }


local permit_mt = {}
permit_mt.__index = permit_mt


local function request(what, level)
    local r = get_request()

    if not r then
        error(what .. " needs a request (not available in init_by_lua)",
              level + 1)
    end

    return r
end


-- new(name [, opts]): the breaker "name" of nginx.conf, or, with
-- opts.zone, one created in that breaker_zone; opts.key is the key of a
-- keyed breaker ("breaker name zone=z key=..."), used when allow() and
-- state() get none
function _M.new(name, opts)
    if type(name) ~= "string" then
        error("breaker name must be a string, got " .. type(name), 2)
    end

    local zone, key

    if opts ~= nil then
        if type(opts) ~= "table" then
            error("opts must be a table, got " .. type(opts), 2)
        end

        zone = opts.zone
        key = opts.key

        if zone ~= nil and type(zone) ~= "string" then
            error("opts.zone must be a string, got " .. type(zone), 2)
        end

        if key ~= nil and type(key) ~= "string" then
            error("opts.key must be a string, got " .. type(key), 2)
        end
    end

    if get_request() == nil then
        error("breakers are not ready in init_by_lua: call new() in "
              .. "init_worker_by_lua or in a request", 2)
    end

    local b = C.ngx_http_breaker_lua_breaker(name, #name, zone,
                                             zone and #zone or 0, desc,
                                             errp)
    if b == nil then
        return nil, 'breaker "' .. name .. '": ' .. ffi_str(errp[0])
    end

    return setmetatable({
        breaker = b,
        name = name,
        key = key,
        keyed = tonumber(desc.keyed),
        shared = desc.shared == 1,
    }, mt)
end


local function check_self(self, method)
    if type(self) ~= "table" or self.breaker == nil then
        error("use b:" .. method .. "(...), not b." .. method .. "(...)", 3)
    end
end


-- the key a call uses: its own, else the object's
local function call_key(self, key, level)
    if key == nil then
        key = self.key
    end

    if key == nil then
        if self.keyed == 1 then
            error('breaker "' .. self.name .. '" is keyed: give a key',
                  level + 1)
        end

        return ""
    end

    if type(key) ~= "string" then
        error("key must be a string, got " .. type(key), level + 1)
    end

    if self.keyed == 0 and key ~= "" then
        error('breaker "' .. self.name .. '" has no key= in nginx.conf',
              level + 1)
    end

    return key
end


-- allow([key]): a permit to make the call, or nil and "open" (open, or
-- half-open with no probe left) or "full" (breaker_max_concurrent), and
-- the state found
function _M.allow(self, key)
    check_self(self, "allow")
    key = call_key(self, key, 2)

    local r = request("allow()", 2)
    local p = ffi_new("ngx_http_breaker_lua_permit_t[1]")

    local rc = C.ngx_http_breaker_lua_allow(r, self.breaker, key, #key, p)

    if rc == ADMITTED then
        ffi_gc(p, C.ngx_http_breaker_lua_release)

        return setmetatable({
            permit = p,
            state = states[tonumber(p[0].state)],
            generation = tonumber(p[0].generation),
            probe = p[0].probe == 1,
            dry_run = p[0].dry_run == 1,
        }, permit_mt)
    end

    if rc == UNTRACKED then
        return setmetatable({ state = "closed", generation = 0,
                              probe = false, dry_run = false }, permit_mt)
    end

    if rc < 0 then
        error('breaker "' .. self.name .. '": allow() failed', 2)
    end

    return nil, rc == FULL and "full" or "open", states[tonumber(p[0].state)]
end


-- permit:report(ok [, latency_ms]): the call's outcome (true: success,
-- false: failure; slow past breaker_slow_call when latency_ms says so);
-- returns the breaker's state afterwards, or nil, "not in flight" when the
-- permit was reported or released already
function permit_mt.report(self, ok, latency)
    if type(self) ~= "table" or getmetatable(self) ~= permit_mt then
        error("use permit:report(...), not permit.report(...)", 2)
    end

    if type(ok) ~= "boolean" then
        error("report() takes true (success) or false (failure), got "
              .. type(ok), 2)
    end

    if latency == nil then
        latency = -1

    elseif type(latency) ~= "number" or latency ~= latency or latency < 0
    then
        error("latency must be a non-negative number of milliseconds, got "
              .. tostring(latency), 2)
    end

    local p = self.permit

    if p == nil then
        -- untracked (an empty key, a full zone, breaker_mode off)
        return self.state
    end

    local rc = C.ngx_http_breaker_lua_report(request("report()", 2), p,
                                             ok and SUCCESS or FAILURE,
                                             latency)
    if rc < 0 then
        return nil, "not in flight"
    end

    return states[rc]
end


-- permit:release(): the call says nothing about the upstream (cancelled)
function permit_mt.release(self)
    if type(self) ~= "table" or getmetatable(self) ~= permit_mt then
        error("use permit:release(), not permit.release()", 2)
    end

    if self.permit ~= nil then
        C.ngx_http_breaker_lua_release(self.permit)
    end
end


-- state([key]): "closed", "open" or "half_open", and the details
function _M.state(self, key)
    check_self(self, "state")
    key = call_key(self, key, 2)

    local rc = C.ngx_http_breaker_lua_state(self.breaker, key, #key, info)

    if rc < 0 then
        return nil, "the breaker_zone is full"
    end

    return states[rc], {
        mode = mode_names[tonumber(info.mode)],
        generation = tonumber(info.generation),
        trips = tonumber(info.trips),
        inflight = tonumber(info.inflight),
        consecutive_failures = tonumber(info.consecutive),
        open_ms_left = tonumber(info.open_ms),
        transitions = tonumber(info.transitions),
        requests = {
            success = tonumber(info.successes),
            failure = tonumber(info.failures),
            slow = tonumber(info.slow),
            rejected = tonumber(info.rejected),
            dry_run_rejected = tonumber(info.dry_run_rejected),
        },
    }
end


-- force(mode): every key of the breaker in "enforce", "dry_run",
-- "force_open", "force_closed" or "off", or back to nginx.conf's mode
-- with "default" (as resilience_admin's PUT); the keys reached
function _M.force(self, mode)
    check_self(self, "force")

    local m = modes[mode]

    if m == nil then
        error("invalid mode " .. tostring(mode) .. ", expected enforce, "
              .. "dry_run, force_open, force_closed, off or default", 2)
    end

    local n = C.ngx_http_breaker_lua_force(request("force()", 2),
                                           self.breaker, m)
    if n < 0 then
        return nil, "too many breakers with overrides in the zone"
    end

    return n
end


return _M
