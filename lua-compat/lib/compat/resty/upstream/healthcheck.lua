-- resty.upstream.healthcheck backed by ngx_http_upstream_discovery_module
-- (lua-compat's shim).
--
-- Opt-in: with lua-compat/lib/compat (and lua-compat/lib) first in
-- lua_package_path, existing code keeps its require lines.  The checks are
-- configured with health_check in the upstream block and run in the
-- module (one probe per peer per interval for all workers), so
-- spawn_checker() starts nothing: it checks that the upstream is
-- health-checked and says so.  status_page() keeps its layout, and
-- prometheus_status_page() its metric names.

local hc = require "resty.resilience.healthcheck"


local _M = {
    _VERSION = "0.1.0",
    status_page = hc.status_page,
    prometheus_status_page = hc.prometheus_status_page,
}


function _M.spawn_checker(opts)
    if type(opts) ~= "table" then
        return nil, "opts must be a table"
    end

    if type(opts.upstream) ~= "string" then
        return nil, "\"upstream\" option required"
    end

    local peers, err = hc.peers(opts.upstream)
    if not peers then
        return nil, err .. ": add \"health_check\" to its upstream block"
    end

    ngx.log(ngx.INFO, "resty.upstream.healthcheck (lua-compat): upstream \"",
            opts.upstream, "\" is checked by health_check in nginx.conf; ",
            "spawn_checker() options are not used")

    return true
end


return _M
