-- resty.limit.count backed by ngx_http_ratelimit_module (lua-compat's
-- shim).
--
-- Opt-in: with lua-compat/lib/compat (and lua-compat/lib) first in
-- lua_package_path, existing code keeps its require "resty.limit.count"
-- and gets resty.resilience.limit.count: new(zone, limit, window) takes
-- the name of an algorithm=sliding_window ratelimit_zone whose window is
-- that window; incoming() and uncommit() keep their contract.

return require "resty.resilience.limit.count"
