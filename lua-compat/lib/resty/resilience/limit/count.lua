-- resty.resilience.limit.count: a number of requests per time window, on
-- an algorithm=sliding_window zone of ngx_http_ratelimit_module, with
-- resty.limit.count's API.
--
--   local count = require "resty.resilience.limit.count"
--   local lim, err = count.new("per_key", 5000, 3600)  -- limit, window (s)
--   local delay, remaining = lim:incoming(ngx.var.http_x_api_key, true)
--   if not delay then
--       if remaining == "rejected" then return ngx.exit(429) end
--       return ngx.exit(500)
--   end
--
-- The window must be the zone's; a limit above the zone's quota is the
-- zone's quota plus a burst (as "ratelimit ... burst=").  The count is the
-- zone's sliding window (the previous window weighs in by its share), not
-- a fixed window, and a rejected request is not charged.

local limit = require "resty.resilience.limit"


local type = type
local tostring = tostring
local error = error
local floor = math.floor
local abs = math.abs
local setmetatable = setmetatable


local _M = {
    _VERSION = limit._VERSION,
}

local mt = { __index = _M }


function _M.new(zone, max, window)
    if type(max) ~= "number" or max ~= max or max <= 0 or max ~= floor(max)
    then
        error("limit must be a positive whole number, got "
              .. tostring(max), 2)
    end

    if type(window) ~= "number" or window ~= window or window <= 0 then
        error("window must be a positive number of seconds, got "
              .. tostring(window), 2)
    end

    local z, zinfo = limit.zone(zone, 2)

    if not z then
        return nil, zinfo
    end

    if zinfo.algorithm ~= "sliding_window" then
        return nil, 'ratelimit_zone "' .. zone .. '" is not '
                    .. "algorithm=sliding_window"
    end

    if abs(zinfo.period - window) > 1e-9 * window then
        return nil, 'ratelimit_zone "' .. zone .. '" counts over '
                    .. zinfo.period .. " s, not " .. window
    end

    local quota = zinfo.milli / 1000

    if max < quota then
        return nil, 'ratelimit_zone "' .. zone .. '" allows ' .. quota
                    .. " requests per window, more than " .. max
    end

    local lim = limit.new(zone, nil, max - quota)

    return setmetatable({ lim = lim, limit = max }, mt)
end


local function check_self(self, method)
    if type(self) ~= "table" or self.lim == nil then
        error("use lim:" .. method .. "(...), not lim." .. method
              .. "(...)", 3)
    end
end


-- incoming(key, commit): 0 and the requests left; nil, "rejected"
function _M.incoming(self, key, commit)
    check_self(self, "incoming")

    local delay, err = self.lim:incoming(key, commit)

    if not delay then
        return nil, err
    end

    return 0, limit.remaining()
end


-- uncommit(key): the requests left afterwards
function _M.uncommit(self, key)
    check_self(self, "uncommit")

    local ok, err = self.lim:uncommit(key)

    if not ok then
        if err == "not found" then
            return self.limit
        end

        return nil, err
    end

    return limit.remaining()
end


return _M
