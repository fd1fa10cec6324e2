-- resty.resilience.healthcheck: the health-checked upstreams of
-- ngx_http_upstream_discovery_module (health_check / discovery in
-- nginx.conf), read from Lua.
--
--   local hc = require "resty.resilience.healthcheck"
--   ngx.print(hc.status_page())            -- resty.upstream.healthcheck's layout
--   local peers = hc.peers("api")          -- { {name=, state=, ...}, ... }
--
-- The checks themselves run in the module (one probe per peer per
-- interval across all workers); nothing is spawned from Lua.  LuaJIT FFI
-- over the module's C ABI; see README.md, "OpenResty".

local ffi = require "ffi"


local C = ffi.C
local ffi_string = ffi.string
local ffi_new = ffi.new
local concat = table.concat
local error = error
local type = type
local tonumber = tonumber
local ipairs = ipairs


ffi.cdef[[
typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    int                   npeers;
    int                   check;
} ngx_http_ud_lua_upstream_t;

typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    int                   state;
    int                   admin;
    int                   backup;
    int                   source;
    int                   weight;
    int                   fails;
    int                   passes;
    int                   checked;
    int                   last_ok;
    int64_t               latency_ms;
    int64_t               inflight;
    int64_t               requests;
    int64_t               probes;
} ngx_http_ud_lua_peer_t;

typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    int                   ours;
} ngx_http_ud_lua_any_t;

typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    int                   backup;
    int                   down;
} ngx_http_ud_lua_server_t;

int ngx_http_ud_lua_upstreams(void);
int ngx_http_ud_lua_upstream(int i, ngx_http_ud_lua_upstream_t *out);
int ngx_http_ud_lua_peer(int i, int j, ngx_http_ud_lua_peer_t *out);
int ngx_http_ud_lua_all_upstreams(void);
int ngx_http_ud_lua_any_upstream(int i, ngx_http_ud_lua_any_t *out);
int ngx_http_ud_lua_server(int i, int j, ngx_http_ud_lua_server_t *out);
]]


if not pcall(function () return C.ngx_http_ud_lua_upstreams end) then
    error("resty.resilience.healthcheck needs "
          .. "ngx_http_upstream_discovery_module: load_module "
          .. "modules/ngx_http_resilience_module.so and "
          .. "modules/ngx_http_upstream_discovery_module.so in nginx.conf", 2)
end


local states = { "up", "down", "checking", "draining" }
local admins = { [0] = "none", "drain", "down" }
local sources = { [0] = "static", "file", "redis", "consul", "dns" }

local up_buf = ffi_new("ngx_http_ud_lua_upstream_t")
local peer_buf = ffi_new("ngx_http_ud_lua_peer_t")
local any_buf = ffi_new("ngx_http_ud_lua_any_t")
local server_buf = ffi_new("ngx_http_ud_lua_server_t")


local _M = {
    _VERSION = "0.1.0",
}


local function upstream_peers(i)
    local peers = {}
    local n = up_buf.npeers

    for j = 0, n - 1 do
        if C.ngx_http_ud_lua_peer(i, j, peer_buf) == 0 then
            local p = peer_buf
            local state = states[p.state] or "unknown"

            peers[#peers + 1] = {
                name = ffi_string(p.name, p.name_len),
                state = state,
                admin = admins[p.admin] or "none",
                -- as resty.upstream.healthcheck: serving or not
                down = state ~= "up" or p.admin ~= 0,
                backup = p.backup ~= 0,
                source = sources[p.source] or "unknown",
                weight = p.weight,
                fails = p.fails,
                passes = p.passes,
                last_check = p.checked == 0 and "none"
                             or (p.last_ok ~= 0 and "passed" or "failed"),
                latency_ms = tonumber(p.latency_ms),
                inflight = tonumber(p.inflight),
                requests = tonumber(p.requests),
                probes = tonumber(p.probes),
            }
        end
    end

    return peers
end


-- every upstream of the configuration, in its order: { name =, checked =,
-- peers = } (an upstream without health_check nor discovery: its
-- configured servers, down as configured)
local function all_upstreams()
    local list = {}

    for i = 0, C.ngx_http_ud_lua_all_upstreams() - 1 do
        if C.ngx_http_ud_lua_any_upstream(i, any_buf) == 0 then
            local u = {
                name = ffi_string(any_buf.name, any_buf.name_len),
                checked = false,
            }

            if any_buf.ours >= 0
               and C.ngx_http_ud_lua_upstream(any_buf.ours, up_buf) == 0
            then
                u.checked = up_buf.check ~= 0
                u.peers = upstream_peers(any_buf.ours)

            else
                u.peers = {}
                local j = 0

                while C.ngx_http_ud_lua_server(i, j, server_buf) == 0 do
                    u.peers[#u.peers + 1] = {
                        name = ffi_string(server_buf.name,
                                          server_buf.name_len),
                        backup = server_buf.backup ~= 0,
                        down = server_buf.down ~= 0,
                    }
                    j = j + 1
                end
            end

            list[#list + 1] = u
        end
    end

    return list
end


-- upstreams(): the names of the health-checked upstreams, in nginx.conf's
-- order
function _M.upstreams()
    local names = {}

    for i = 0, C.ngx_http_ud_lua_upstreams() - 1 do
        if C.ngx_http_ud_lua_upstream(i, up_buf) == 0 then
            names[#names + 1] = ffi_string(up_buf.name, up_buf.name_len)
        end
    end

    return names
end


-- peers(name): the upstream's peers as tables, or nil and an error
function _M.peers(name)
    if type(name) ~= "string" then
        error("peers(): the upstream's name must be a string, got "
              .. type(name), 2)
    end

    for i = 0, C.ngx_http_ud_lua_upstreams() - 1 do
        if C.ngx_http_ud_lua_upstream(i, up_buf) == 0
           and ffi_string(up_buf.name, up_buf.name_len) == name
        then
            return upstream_peers(i)
        end
    end

    return nil, "no health-checked upstream \"" .. name .. "\""
end


-- status_page(): the text resty.upstream.healthcheck's status_page()
-- gives, for every upstream (those without health_check marked "(NO
-- checkers)", their servers UP unless configured down):
--
--   Upstream api
--       Primary Peers
--           10.0.0.10:8080 UP
--           10.0.0.12:8080 DOWN
--       Backup Peers
--           10.0.0.11:8080 UP
--
-- (a blank line between upstreams; "checking" and "draining" peers, and
-- peers drained or downed by hand, are DOWN: they get no new requests)
function _M.status_page()
    local bits = {}

    for _, u in ipairs(all_upstreams()) do
        if #bits > 0 then
            bits[#bits + 1] = "\n"
        end

        bits[#bits + 1] = "Upstream " .. u.name
                          .. (u.checked and "" or " (NO checkers)")
                          .. "\n    Primary Peers\n"

        for _, p in ipairs(u.peers) do
            if not p.backup then
                bits[#bits + 1] = "        " .. p.name
                                  .. (p.down and " DOWN\n" or " UP\n")
            end
        end

        bits[#bits + 1] = "    Backup Peers\n"

        for _, p in ipairs(u.peers) do
            if p.backup then
                bits[#bits + 1] = "        " .. p.name
                                  .. (p.down and " DOWN\n" or " UP\n")
            end
        end
    end

    return concat(bits)
end

local function prometheus_peer(bits, u, p, role)
    local up = p.down and 0 or 1

    bits[#bits + 1] = 'nginx_upstream_status_info{name="' .. u
                      .. '",endpoint="' .. p.name .. '",status="UP",role="'
                      .. role .. '"} ' .. up .. "\n"
    bits[#bits + 1] = 'nginx_upstream_status_info{name="' .. u
                      .. '",endpoint="' .. p.name .. '",status="DOWN",role="'
                      .. role .. '"} ' .. (1 - up) .. "\n"

    return up == 1
end


local function prometheus_upstream(bits, u, status)
    for _, st in ipairs({ "UP", "DOWN", "UNKNOWN" }) do
        bits[#bits + 1] = 'nginx_upstream_status_info{name="' .. u
                          .. '",status="' .. st .. '"} '
                          .. (st == status and 1 or 0) .. "\n"
    end
end


-- prometheus_status_page(): resty.upstream.healthcheck's metric and
-- labels (nginx_upstream_status_info, per peer with role PRIMARY or
-- BACKUP, then per upstream UP / DOWN / UNKNOWN, UNKNOWN for an upstream
-- without health_check, as for one without checkers)
function _M.prometheus_status_page()
    local bits = {
        "# HELP nginx_upstream_status_info The running status of nginx "
        .. "upstream\n",
        "# TYPE nginx_upstream_status_info gauge\n",
    }

    for _, u in ipairs(all_upstreams()) do
        if not u.checked then
            prometheus_upstream(bits, u.name, "UNKNOWN")

        else
            local found = false

            for _, role in ipairs({ "PRIMARY", "BACKUP" }) do
                for _, p in ipairs(u.peers) do
                    if p.backup == (role == "BACKUP")
                       and prometheus_peer(bits, u.name, p, role)
                    then
                        found = true
                    end
                end
            end

            prometheus_upstream(bits, u.name, found and "UP" or "DOWN")
        end
    end

    return concat(bits)
end


return _M
