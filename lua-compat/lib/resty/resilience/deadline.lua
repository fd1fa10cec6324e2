-- resty.resilience.deadline: the current request's time budget, as
-- ngx_http_deadline_module computes it (deadline, deadline_from,
-- deadline_max, deadline_offset), for calls made from Lua.
--
--   local deadline = require "resty.resilience.deadline"
--   local sock = ngx.socket.tcp()
--   local ok, err = deadline.settimeouts(sock, 200, 1000, 1000)
--   if not ok then return ngx.exit(504) end       -- "deadline exceeded"
--   -- connect, send and read now end by the request's deadline at most
--
-- remaining() is what $deadline_remaining_ms says, from the module itself
-- (LuaJIT FFI over its C ABI).  See README.md, "OpenResty".

local ffi = require "ffi"
local base = require "resty.core.base"


local C = ffi.C
local get_request = base.get_request
local get_phase = ngx.get_phase
local tonumber = tonumber
local tostring = tostring
local type = type
local error = error
local ceil = math.ceil


ffi.cdef[[
int64_t ngx_http_deadline_lua_remaining(ngx_http_request_t *r);
]]


if not pcall(function () return C.ngx_http_deadline_lua_remaining end) then
    error("resty.resilience.deadline needs ngx_http_deadline_module: "
          .. "load_module modules/ngx_http_resilience_module.so and "
          .. "modules/ngx_http_deadline_module.so in nginx.conf", 2)
end


-- the phases that run on behalf of a client's request
local request_phases = {
    set = true, rewrite = true, server_rewrite = true, access = true,
    content = true, header_filter = true, body_filter = true, log = true,
    balancer = true,
}


local _M = {
    _VERSION = "0.1.0",
}


-- remaining(): the milliseconds left (0 when spent), or nil when the
-- request has no deadline
function _M.remaining()
    local r = get_request()
    local phase = r and get_phase()

    if not r or not request_phases[phase] then
        error("the deadline belongs to a request: not available in the "
              .. (phase or "init") .. " phase", 2)
    end

    local left = tonumber(C.ngx_http_deadline_lua_remaining(r))

    if left == -1 then
        return nil
    end

    if left < 0 then
        return nil, "failed"
    end

    return left
end


-- expired(): true once the budget is spent (false without a deadline)
function _M.expired()
    local left = _M.remaining()

    return left == 0
end


local function clamp(v, what, left)
    if type(v) ~= "number" or v ~= v or v < 0 then
        error(what .. " must be a non-negative number of milliseconds, got "
              .. tostring(v), 3)
    end

    if left == nil then
        return v
    end

    -- 0 means "the default" to cosockets: never hand it over, nor a
    -- fraction they would round down to it (left is whole ms, >= 1 here)
    if v == 0 or v > left then
        return left
    end

    return ceil(v)
end


-- timeouts(connect, send, read): each clamped to the time left (as the
-- module clamps proxy_*_timeout), or nil, "deadline exceeded"
function _M.timeouts(connect, send, read)
    local left = _M.remaining()

    if left == 0 then
        return nil, "deadline exceeded"
    end

    return clamp(connect, "connect timeout", left),
           clamp(send, "send timeout", left),
           clamp(read, "read timeout", left)
end


-- settimeouts(sock, connect, send, read): sock:settimeouts() with those
function _M.settimeouts(sock, connect, send, read)
    if type(sock) ~= "table" or type(sock.settimeouts) ~= "function" then
        error("settimeouts() takes a cosocket (ngx.socket.tcp()) first", 2)
    end

    local c, s, r = _M.timeouts(connect, send, read)

    if not c then
        return nil, s
    end

    sock:settimeouts(c, s, r)

    return true
end


return _M
