-- resty.limit.req backed by ngx_http_ratelimit_module (lua-compat's shim).
--
-- Opt-in: with lua-compat/lib/compat (and lua-compat/lib) first in
-- lua_package_path, existing code keeps its require "resty.limit.req"
-- and gets resty.resilience.limit: new(zone, rate, burst) takes the name
-- of a ratelimit_zone (instead of a lua_shared_dict) whose rate= is that
-- rate; incoming(), uncommit(), set_burst() keep their contract.

return require "resty.resilience.limit"
