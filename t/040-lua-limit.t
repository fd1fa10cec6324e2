# lua-compat: resty.resilience.limit (and .count, and the resty.limit.req /
# resty.limit.count shims) on ratelimit_zone zones, from OpenResty's Lua
# module: resty.limit.req's contract case by case, Lua and directive
# limits sharing one zone's budget, the zone's metrics, a sync=redis zone
# whose Lua charges reach Redis, and bad arguments as Lua errors.

use lib 't/lib';
use NR::Lua;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_REDIS_PORT} //= 6379;
$ENV{TEST_NGINX_PREFIX} = "lua$$" . int(rand(1e6)) . ":";

run_tests();

__DATA__

=== TEST 1: incoming(key, true): resty.limit.req's delays and excess, then "rejected"
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=10r/s;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("rl", 10, 3))
            -- one event-loop turn: no time passes between the calls
            for i = 1, 6 do
                local delay, err = lim:incoming("alice", true)
                ngx.say(i, ": ", tostring(delay), " ", tostring(err))
            end
            ngx.say("other: ", lim:incoming("bob", true))
        }
    }
--- request
GET /t
--- response_body
1: 0 0
2: 0.1 1
3: 0.2 2
4: 0.3 3
5: nil rejected
6: nil rejected
other: 00
--- no_error_log
[error]
[alert]



=== TEST 2: commit=false reports the delay without charging; a rejection charges nothing
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=10r/s;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("rl", 10, 1))
            local out = {}
            local function try(commit)
                local d, e = lim:incoming("k", commit)
                out[#out + 1] = (commit and "C" or "c") .. "="
                                .. tostring(d) .. "/" .. tostring(e)
            end
            try(false) try(false) try(false)
            try(true)  try(false) try(true)
            try(false) try(true)  try(true)
            ngx.say(table.concat(out, " "))
        }
    }
--- request
GET /t
--- response_body
c=0/0 c=0/0 c=0/0 C=0/0 c=0.1/1 C=0.1/1 c=nil/rejected C=nil/rejected C=nil/rejected
--- no_error_log
[error]



=== TEST 3: uncommit gives one request back; an unknown key is "not found"
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=10r/s;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("rl", 10, 2))
            for i = 1, 3 do assert(lim:incoming("k", true)) end
            ngx.say("full: ", lim:incoming("k", false))
            ngx.say("uncommit: ", lim:uncommit("k"))
            ngx.say("again: ", lim:incoming("k", true))
            ngx.say("uncommit x3: ", lim:uncommit("k"), lim:uncommit("k"),
                    lim:uncommit("k"))
            -- every charge given back: as good as new, never better
            ngx.say("uncommit idle: ", lim:uncommit("k"))
            ngx.say("fresh: ", lim:incoming("k", true))
            ngx.say("unknown: ", lim:uncommit("nobody"))
        }
    }
--- request
GET /t
--- response_body
full: nilrejected
uncommit: true
again: 0.22
uncommit x3: truetruetrue
uncommit idle: true
fresh: 00
unknown: nilnot found
--- no_error_log
[error]



=== TEST 4: opts: nodelay passes the burst at once, delay=N as the directive's
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=5r/s;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local a = assert(limit.new("rl", 5, 3, { nodelay = true }))
            local b = assert(limit.new("rl", 5, 3, { delay = 1 }))
            local out = {}
            for i = 1, 5 do out[#out + 1] = tostring(a:incoming("a", true)) end
            ngx.say("nodelay: ", table.concat(out, " "))
            out = {}
            for i = 1, 5 do out[#out + 1] = tostring(b:incoming("b", true)) end
            ngx.say("delay=1: ", table.concat(out, " "))
        }
    }
--- request
GET /t
--- response_body
nodelay: 0 0 0 0 nil
delay=1: 0 0 0.2 0.4 nil
--- no_error_log
[error]



=== TEST 5: a Lua limit and a directive limit on one zone share the key's budget
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone shared key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location = /dir {
        ratelimit shared burst=2 nodelay;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /lua {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            -- no rate: the zone's (1 r/m)
            local lim = assert(limit.new("shared", nil, 2, { nodelay = true }))
            local delay, err = lim:incoming(ngx.var.arg_k, true)
            if not delay then
                return ngx.exit(429)
            end
            ngx.say("lua ok")
        }
    }
--- request eval
["GET /lua?k=a", "GET /lua?k=a", "GET /dir?k=a", "GET /dir?k=a",
 "GET /lua?k=a",
 "GET /dir?k=b", "GET /dir?k=b", "GET /dir?k=b", "GET /lua?k=b",
 "GET /dir?k=b"]
--- error_code eval
[200, 200, 200, 429, 429, 200, 200, 200, 429, 429]
--- no_error_log
[alert]
[crit]



=== TEST 6: Lua decisions count in the zone's metrics, as the directive's
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone m key=$arg_k size=1m rate=10r/s;
--- config
    location = /metrics { resilience_status prometheus; }
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("m", 10, 1))
            lim:incoming("x", true)           -- passed
            lim:incoming("x", true)           -- delayed
            lim:incoming("x", true)           -- rejected
            lim:incoming("x", false)          -- rejected
            lim:incoming("y", false)          -- not charged, not counted
            ngx.say("done")
        }
    }
--- request eval
["GET /t", "GET /metrics"]
--- response_body_like eval
["done",
 qr/ratelimit_requests_total\{zone="m",outcome="passed"\} 1\n.*outcome="delayed"\} 1\n.*outcome="rejected"\} 2\n.*ratelimit_keys\{zone="m"\} 2\n/s]
--- no_error_log
[error]



=== TEST 7: resty.resilience.limit.count: requests left, "rejected", uncommit
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone q key=$arg_k size=1m rate=3r/m algorithm=sliding_window;
    ratelimit_zone g key=$arg_k size=1m rate=3r/m;
--- config
    location = /t {
        content_by_lua_block {
            local count = require "resty.resilience.limit.count"
            local lim = assert(count.new("q", 3, 60))
            local out = {}
            for i = 1, 4 do
                local d, r = lim:incoming("k", true)
                out[#out + 1] = tostring(d) .. "/" .. tostring(r)
            end
            ngx.say(table.concat(out, " "))
            ngx.say("uncommit: ", lim:uncommit("k"))
            ngx.say("peek: ", lim:incoming("k", false))
            ngx.say("burst: ", count.new("q", 5, 60):incoming("z", true))
            ngx.say(count.new("q", 3, 10))
            ngx.say(count.new("q", 2, 60))
            ngx.say(count.new("g", 3, 60))
        }
    }
--- request
GET /t
--- response_body
0/2 0/1 0/0 nil/rejected
uncommit: 1
peek: 00
burst: 04
nilratelimit_zone "q" counts over 60 s, not 10
nilratelimit_zone "q" allows 3 requests per window, more than 2
nilratelimit_zone "g" is not algorithm=sliding_window
--- no_error_log
[error]



=== TEST 8: opt-in shims: require "resty.limit.req" / "resty.limit.count" get ours
--- http_config
    lua_package_path "$TEST_NGINX_LUA_COMPAT";
    ratelimit_zone my_limit_req_store key=$binary_remote_addr size=1m
                   rate=200r/s;
    ratelimit_zone my_limit_count_store key=$binary_remote_addr size=1m
                   rate=5000r/h algorithm=sliding_window;
--- config
    location = /t {
        access_by_lua_block {
            -- resty.limit.req's README example, unchanged but the store
            local limit_req = require "resty.limit.req"
            local lim, err = limit_req.new("my_limit_req_store", 200, 100)
            if not lim then
                ngx.log(ngx.ERR, "failed to instantiate a resty.limit.req ",
                        "object: ", err)
                return ngx.exit(500)
            end
            local key = ngx.var.binary_remote_addr
            local delay, err = lim:incoming(key, true)
            if not delay then
                if err == "rejected" then
                    return ngx.exit(503)
                end
                ngx.log(ngx.ERR, "failed to limit req: ", err)
                return ngx.exit(500)
            end
            if delay >= 0.001 then
                ngx.sleep(delay)
            end

            local limit_count = require "resty.limit.count"
            local lc = assert(limit_count.new("my_limit_count_store", 5000,
                                              3600))
            local d, remaining = lc:incoming(key, true)
            ngx.ctx.remaining = remaining
        }
        content_by_lua_block {
            ngx.say(require("resty.limit.req")
                    == require("resty.resilience.limit"), " ",
                    require("resty.limit.count")
                    == require("resty.resilience.limit.count"), " ",
                    ngx.ctx.remaining)
        }
    }
--- request
GET /t
--- response_body
true true 4999
--- no_error_log
[error]



=== TEST 9: sync=redis: what Lua charges reaches the fleet's state in Redis
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX;
    ratelimit_zone fleet key=$arg_k size=1m rate=1r/m sync=redis
                   sync_interval=50ms;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("fleet", nil, 5))
            for i = 1, 3 do assert(lim:incoming("k1", true)) end
            ngx.sleep(0.4)            -- a few sync ticks

            -- the key's theoretical arrival time in Redis
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", $TEST_NGINX_REDIS_PORT))
            local key = "$TEST_NGINX_PREFIX" .. "rl:fleet:k1"
            assert(sock:send("*1\r\n$4\r\nTIME\r\n" .. "*2\r\n$3\r\nGET\r\n$"
                             .. #key .. "\r\n" .. key .. "\r\n"))
            local lines = {}
            for i = 1, 7 do lines[i] = assert(sock:receive("*l")) end
            sock:close()
            local now = tonumber(lines[3]) * 1e6 + tonumber(lines[5])
            -- "<us>:<ns>"
            local ahead = (tonumber(lines[7]:match("^(%d+)")) - now) / 1e6
            -- three requests at 1 r/m: about 180 s ahead of now
            ngx.say(ahead > 170 and ahead <= 181 and "charged 3" or ahead)
        }
    }
--- request
GET /t
--- response_body
charged 3
--- no_error_log
[error]
[alert]



=== TEST 10: bad arguments are Lua errors with clear messages
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=10r/s;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("rl", 10, 1))
            local function e(f, ...)
                local ok, err = pcall(f, ...)
                ngx.say(ok and "no error" or (err:gsub("^.-:%d+: ", "")))
            end
            e(limit.new, 42, 10, 1)
            e(limit.new, "rl", -1, 1)
            e(limit.new, "rl", 10, 1.5)
            e(limit.new, "rl", 10, 1, { nodelay = true, delay = 2 })
            e(limit.new, "rl", 10, 1, "nodelay")
            e(lim.incoming, lim, nil, true)
            e(lim.incoming, lim, {}, true)
            e(lim.incoming, lim, "k", true, -1)
            e(lim.incoming, lim, "k", true, 2000000)
            e(lim.incoming, "k", true)
            e(lim.uncommit, lim, false)
            e(lim.set_rate, lim, 20)
            e(lim.set_burst, lim, -2)
            ngx.say("still: ", lim:incoming("k", true))
            ngx.say("not found: ", limit.new("nope", 10, 1))
            ngx.say("wrong rate: ", limit.new("rl", 11, 1))
            ngx.say("empty key exempt: ", lim:incoming("", true))
        }
    }
--- request
GET /t
--- response_body
zone name must be a string, got number
rate must be a positive number of requests per second, got -1
burst must be a whole number, got 1.5
opts.nodelay and opts.delay exclude each other
opts must be a table, got string
key must be a string, got nil
key must be a string, got table
cost must be a number from 0 to 1000000, got -1
cost must be a number from 0 to 1000000, got 2000000
use lim:incoming(...), not lim.incoming(...)
key must be a string, got boolean
the rate belongs to ratelimit_zone "rl" (10 r/s): change it in nginx.conf
burst must be a number from 0 to 10000000, got -2
still: 00
not found: nilratelimit_zone "nope" not found
wrong rate: nilratelimit_zone "rl" has rate 10 r/s, not 11
empty key exempt: 00
--- no_error_log
[error]
[alert]



=== TEST 11: an uncaught bad argument fails the request (500), not the worker
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=10r/s;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("rl", 10, 1))
            lim:incoming(ngx.null, true)
        }
    }
--- request
GET /t
--- error_code: 500
--- error_log
key must be a string, got userdata
--- no_error_log
[alert]
[crit]
exited on signal



=== TEST 12: new() in init_by_lua is an error: zones exist in workers only
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=10r/s;
    init_by_lua_block {
        local limit = require "resty.resilience.limit"
        local ok, err = pcall(limit.new, "rl", 10, 1)
        package.loaded.init_error = err
    }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say((package.loaded.init_error:gsub("^.-:%d+: ", "")))
        }
    }
--- request
GET /t
--- response_body
ratelimit zones are not ready in init_by_lua: call new() in init_worker_by_lua or in a request
--- no_error_log
[alert]



=== TEST 13: resty.limit.conn's contract on a zone: delays per max, rejected beyond burst, leaving, uncommit, commit=false
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone conns key=$arg_k size=1m rate=1r/s;
--- config
    location = /t {
        content_by_lua_block {
            local conn = require "resty.resilience.limit.conn"
            local lim = assert(conn.new("conns", 2, 1, 0.5))
            for i = 1, 4 do
                local delay, c = lim:incoming("k", true)
                ngx.say(i, ": ", tostring(delay), " ", tostring(c), " ",
                        tostring(lim:is_committed()))
            end
            ngx.say("leaving: ", lim:leaving("k"))
            local d, c = lim:incoming("k", false)
            ngx.say("peek: ", d, " ", c, " ", tostring(lim:is_committed()))
            ngx.say("leaving with latency: ", lim:leaving("k", 0.1),
                    " unit ", lim.unit_delay)
            ngx.say("again: ", lim:incoming("k", true))
            ngx.say("uncommit: ", lim:uncommit("k"))
            ngx.say("others: ", lim:incoming("j", true))
            ngx.say("unknown: ", select(2, lim:leaving("nobody")))
        }
    }
--- request
GET /t
--- response_body
1: 0 1 true
2: 0 2 true
3: 0.5 3 true
4: nil rejected false
leaving: 2
peek: 0.5 3 false
leaving with latency: 1 unit 0.3
again: 02
uncommit: 1
others: 01
unknown: not found
--- no_error_log
[error]
[alert]



=== TEST 14: the counts are the zone's: every worker, and the shim keeps require "resty.limit.conn"
--- http_config
    lua_package_path "$TEST_NGINX_LUA_COMPAT";
    ratelimit_zone conns key=$arg_k size=1m rate=1r/s;
--- config
    location = /t {
        content_by_lua_block {
            local conn = require "resty.limit.conn"
            ngx.say(conn == require "resty.resilience.limit.conn")
            local a = assert(conn.new("conns", 1, 0, 0.1))
            local b = assert(conn.new("conns", 1, 0, 0.1))
            ngx.say(a:incoming("shared", true))
            ngx.say(b:incoming("shared", true))
            ngx.say(a:leaving("shared"))
            ngx.say(b:incoming("shared", true))
            local ok, err = pcall(conn.new, "conns", 0, 1, 0.1)
            ngx.say(ok, " ", err:match("max must.*"))
            ok, err = pcall(a.incoming, a, 42, true)
            ngx.say(ok, " ", err:match("the key must.*"))
        }
    }
--- request
GET /t
--- response_body
true
01
nilrejected
0
01
false max must be a number >= 1, got 0
false the key must be a non-empty string, got number
--- no_error_log
[alert]



=== TEST 15: reset(zone): a zone forgets every key, as flush_all() on the original's dict (the one line a suite for lua-resty-limit-traffic changes)
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    ratelimit_zone rl key=$arg_k size=1m rate=1r/m;
--- config
    location = /t {
        content_by_lua_block {
            local limit = require "resty.resilience.limit"
            local lim = assert(limit.new("rl", 1 / 60, 0))
            ngx.say("first: ", tostring(lim:incoming("alice", true)))
            ngx.say("again: ", tostring(lim:incoming("alice", true)))
            assert(lim:incoming("bob", true))
            ngx.say("reset: ", tostring(limit.reset("rl")))
            ngx.say("after: ", tostring(lim:incoming("alice", true)))
            ngx.say("flush_all: ", tostring(limit.flush_all("rl")))
            local ok, err = limit.reset("nosuch")
            ngx.say("unknown: ", tostring(ok), " ", err)
        }
    }
--- request
GET /t
--- response_body
first: 0
again: nil
reset: 2
after: 0
flush_all: 1
unknown: nil ratelimit_zone "nosuch" not found
--- no_error_log
[error]
[alert]
