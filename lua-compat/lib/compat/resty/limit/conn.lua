-- resty.limit.conn backed by ngx_http_ratelimit_module (lua-compat's shim).
--
-- Opt-in: with lua-compat/lib/compat (and lua-compat/lib) first in
-- lua_package_path, existing code keeps its require "resty.limit.conn"
-- and gets resty.resilience.limit.conn: new(zone, max, burst, delay)
-- takes the name of a ratelimit_zone (instead of a lua_shared_dict) to
-- count in; incoming(), leaving(), uncommit(), is_committed(),
-- set_conn(), set_burst() keep their contract.

return require "resty.resilience.limit.conn"
