# lua-compat: resty.resilience.breaker on the breakers of
# ngx_http_breaker_module, from OpenResty's Lua module: a Lua-driven and a
# directive-driven breaker share one state (trips from Lua reject
# directive requests, and the other way round), half-open probes, stale
# permits, the bulkhead, keyed breakers, breakers created in a zone,
# force(), state() and metrics, fleet sharing, and bad arguments as Lua
# errors.

use lib 't/lib';
use NR::Lua;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_REDIS_PORT} //= 6379;
$ENV{TEST_NGINX_PREFIX} = "luab$$" . int(rand(1e6)) . ":";

# the breaker "orders" on /api, its tuning at server level so that the
# Lua locations evaluate it the same way
our $Orders = <<'_EOC_';
    breaker_consecutive_failures 3;
    breaker_failure_rate off;
    breaker_open 30s jitter=0%;
    location = /backend/200 { return 200 "backend 200\n"; }
    location = /backend/502 { return 502; }
    location /api/ {
        breaker orders zone=breakers;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
_EOC_

$Orders =~ s/\$TEST_NGINX_SERVER_PORT/$ENV{TEST_NGINX_SERVER_PORT}/g;
$ENV{TEST_NGINX_ORDERS} = $Orders;

run_tests();

__DATA__

=== TEST 1: failures reported from Lua open the breaker; the directive's location rejects
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /lua/fail {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            for i = 1, 3 do
                local permit = assert(b:allow())
                ngx.say(i, ": ", permit.state, " -> ", permit:report(false, 5))
            end
            ngx.say("allow: ", b:allow())
        }
    }
--- request eval
["GET /api/200", "GET /lua/fail", "GET /api/200"]
--- error_code eval
[200, 200, 503]
--- response_body_like eval
["backend 200", "1: closed -> closed\n2: closed -> closed\n3: closed -> open\nallow: nilopenopen\n", "503 Service"]
--- no_error_log
[alert]
[crit]



=== TEST 2: a trip of the directive's location rejects Lua's calls
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            local permit, err, state = b:allow()
            if not permit then
                ngx.say("rejected: ", err, " ", state)
                return
            end
            permit:report(true, 1)
            ngx.say("admitted: ", permit.state)
        }
    }
--- request eval
["GET /lua", "GET /api/502", "GET /api/502", "GET /api/502", "GET /lua"]
--- error_code eval
[200, 502, 502, 502, 200]
--- response_body_like eval
["admitted: closed", "", "", "", "rejected: open open"]
--- no_error_log
[alert]



=== TEST 3: half-open probes from Lua close the breaker; the directive then passes
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    breaker_consecutive_failures 2;
    breaker_failure_rate off;
    breaker_open 200ms jitter=0%;
    breaker_half_open 2 timeout=5s;
    location = /ok { return 200 "ok\n"; }
    location /api {
        breaker orders zone=breakers;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            for i = 1, 2 do assert(b:allow()):report(false) end
            ngx.say("tripped: ", (b:state()))
            ngx.sleep(0.25)
            local p1 = assert(b:allow())
            local p2 = assert(b:allow())
            ngx.say("probes: ", p1.state, " ", p1.probe, " ", p2.probe)
            ngx.say("third: ", b:allow())
            ngx.say("p1: ", p1:report(true, 3))
            ngx.say("p2: ", p2:report(true, 3))
            ngx.say("again: ", p2:report(true, 3))
        }
    }
--- request eval
["GET /lua", "GET /api"]
--- response_body eval
["tripped: open\nprobes: half_open true true\nthird: nilopenhalf_open\np1: half_open\np2: closed\nagain: nilnot in flight\n", "ok\n"]
--- no_error_log
[alert]



=== TEST 4: a permit from before a trip is stale: its outcome is ignored
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            local old = assert(b:allow())
            for i = 1, 3 do assert(b:allow()):report(false) end
            local _, st = b:state()
            ngx.say("generation ", old.generation, " -> ", st.generation)
            old:report(false)
            local _, after = b:state()
            -- counted, but no effect on the state: still one trip
            ngx.say("failures ", after.requests.failure, ", trips ",
                    after.trips, ", inflight ", after.inflight)
        }
    }
--- request
GET /lua
--- response_body
generation 1 -> 2
failures 4, trips 1, inflight 0
--- no_error_log
[error]



=== TEST 5: the bulkhead: max_concurrent permits in flight, then "full"; a release frees one
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    breaker_max_concurrent 2;
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            local p1 = assert(b:allow())
            local p2 = assert(b:allow())
            ngx.say("third: ", b:allow())
            p1:release()
            local p3 = b:allow()
            ngx.say("after release: ", p3 and "admitted" or "rejected")
            local _, st = b:state()
            ngx.say("inflight: ", st.inflight, ", rejected: ",
                    st.requests.rejected)
        }
    }
--- request
GET /lua
--- response_body
third: nilfullclosed
after release: admitted
inflight: 2, rejected: 1
--- no_error_log
[error]



=== TEST 6: permits never reported go back at the end of the request
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    breaker_max_concurrent 2;
    location = /leak {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            -- kept alive to the end of the request, never reported
            package.loaded.kept = { assert(b:allow()), assert(b:allow()) }
            ngx.say("full: ", b:allow())
        }
    }
    location = /check {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            local _, st = b:state()
            ngx.say("inflight: ", st.inflight)
            ngx.say("late report: ", package.loaded.kept[1]:report(false))
            ngx.say("allow: ", b:allow() and "admitted")
        }
    }
--- request eval
["GET /leak", "GET /check"]
--- response_body eval
["full: nilfullclosed\n", "inflight: 0\nlate report: nilnot in flight\nallow: admitted\n"]
--- no_error_log
[error]



=== TEST 7: keyed breaker: a key tripped from Lua rejects that key on the directive's location only
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    breaker_consecutive_failures 2;
    breaker_failure_rate off;
    location = /ok { return 200 "ok\n"; }
    location /t {
        breaker tenants zone=breakers key=$arg_t;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local acme = assert(breaker.new("tenants", { key = "acme" }))
            for i = 1, 2 do assert(acme:allow()):report(false) end
            local b = assert(breaker.new("tenants"))
            ngx.say((b:state("acme")), " ", (b:state("other")))
            ngx.say("exempt: ", b:allow("").state)
        }
    }
--- request eval
["GET /lua", "GET /t?t=acme", "GET /t?t=other", "GET /t"]
--- error_code eval
[200, 503, 200, 200]
--- response_body_like eval
["open closed\nexempt: closed\n", "503", "ok", "ok"]
--- no_error_log
[alert]



=== TEST 8: a breaker created in a zone from Lua; the zone's other breakers untouched
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local pay = assert(breaker.new("payments", { zone = "breakers" }))
            for i = 1, 3 do assert(pay:allow()):report(false) end
            ngx.say("payments: ", (pay:state()))
            ngx.say("same: ", (breaker.new("payments"):state()))
            local per = assert(breaker.new("per_host", { zone = "breakers" }))
            assert(per:allow("a.example")):report(false)
            ngx.say("per_host a: ", (per:state("a.example")), " keyless: ",
                    (per:state()))
            ngx.say("orders: ", (breaker.new("orders"):state()))
            ngx.say(breaker.new("nope"))
            ngx.say(breaker.new("x", { zone = "nozone" }))
            ngx.say(breaker.new("bad name", { zone = "breakers" }))
            ngx.say(breaker.new("orders", { zone = "other" }))
        }
    }
--- request eval
["GET /lua", "GET /api/200"]
--- response_body_like eval
['payments: open
same: open
per_host a: closed keyless: closed
orders: closed
nilbreaker "nope": no such breaker in nginx.conf \(give a zone to create it\)
nilbreaker "x": no such breaker_zone
nilbreaker "bad name": invalid breaker name, expected up to 64 letters, digits, "_", "-" or "."
nilbreaker "orders": the breaker is in another zone
', "backend 200"]
--- no_error_log
[alert]



=== TEST 9: force() from Lua: every worker and location follows, "default" gives it back
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /force {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            ngx.say(b:force(ngx.var.arg_mode), " ", (select(2, b:state()).mode))
        }
    }
--- request eval
["GET /force?mode=force_open", "GET /api/200", "GET /force?mode=default",
 "GET /api/200"]
--- error_code eval
[200, 503, 200, 200]
--- response_body_like eval
["0 force_open", "503", "1 default", "backend 200"]
--- no_error_log
[alert]



=== TEST 10: state(), resilience_admin and the metrics count Lua's calls with the directive's
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    breaker_slow_call 100ms 100%;
    location = /metrics { resilience_status prometheus; }
    location /admin { resilience_admin; }
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            assert(b:allow()):report(true, 10)
            assert(b:allow()):report(true, 500)
            assert(b:allow()):report(false)
            local state, st = b:state()
            ngx.say(state, " success=", st.requests.success,
                    " failure=", st.requests.failure,
                    " slow=", st.requests.slow,
                    " in a row=", st.consecutive_failures)
        }
    }
--- request eval
["GET /api/200", "GET /lua", "GET /metrics", "GET /admin/breakers/orders"]
--- response_body_like eval
["backend 200", "closed success=3 failure=1 slow=1 in a row=1",
 qr/breaker_requests_total\{breaker="orders",key="",outcome="success"\} 3\n.*outcome="failure"\} 1\n.*outcome="slow"\} 1\n/s,
 qr/"success":3,"failure":1,"slow":1/]
--- no_error_log
[error]



=== TEST 11: breaker_shared: a trip from Lua is published to the fleet through Redis
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX;
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    breaker_shared on;
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            ngx.sleep(0.2)            -- the Redis connection
            for i = 1, 3 do assert(b:allow()):report(false) end
            ngx.sleep(0.2)

            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", $TEST_NGINX_REDIS_PORT))
            local key = "$TEST_NGINX_PREFIX" .. "breaker:orders:"
            assert(sock:send("*2\r\n$4\r\nPTTL\r\n$" .. #key .. "\r\n"
                             .. key .. "\r\n"))
            local ttl = tonumber((assert(sock:receive("*l")):sub(2)))
            sock:close()
            ngx.say(ttl > 25000 and ttl <= 30000 and "open in Redis" or ttl)
        }
    }
--- request
GET /lua
--- response_body
open in Redis
--- error_log
breaker "orders" opened for 30000 ms (trip 1)
--- no_error_log
[error]
[alert]



=== TEST 12: from a timer, as background jobs call: a trip there rejects requests
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    lua_shared_dict result 64k;
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            ngx.timer.at(0, function ()
                local b = assert(breaker.new("orders"))
                local kept = assert(b:allow())   -- never reported
                for i = 1, 3 do assert(b:allow()):report(false) end
                ngx.shared.result:set("state", (b:state()))
            end)
            ngx.sleep(0.05)
            local _, st = breaker.new("orders"):state()
            ngx.say(ngx.shared.result:get("state"), " inflight=", st.inflight)
        }
    }
--- request eval
["GET /lua", "GET /api/200"]
--- error_code eval
[200, 503]
--- response_body_like eval
["open inflight=0", "503"]
--- no_error_log
[alert]
[crit]



=== TEST 13: bad arguments are Lua errors with clear messages
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location /t {
        breaker tenants zone=breakers key=$arg_t;
        return 200;
    }
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            local b = assert(breaker.new("orders"))
            local t = assert(breaker.new("tenants"))
            local function e(f, ...)
                local ok, err = pcall(f, ...)
                ngx.say(ok and "no error" or (err:gsub("^.-:%d+: ", "")))
            end
            e(breaker.new, 42)
            e(breaker.new, "orders", "zone")
            e(breaker.new, "orders", { zone = 1 })
            e(breaker.new, "orders", { key = true })
            e(b.allow)
            e(b.allow, b, "k")
            e(t.allow, t)
            e(t.allow, t, 42)
            local p = assert(b:allow())
            e(p.report, p, "yes")
            e(p.report, p, true, -5)
            e(p.report, nil, true)
            e(b.force, b, "sideways")
            e(b.state, b, "k")
            ngx.say("still: ", p:report(true))
        }
    }
--- request
GET /lua
--- response_body
breaker name must be a string, got number
opts must be a table, got string
opts.zone must be a string, got number
opts.key must be a string, got boolean
use b:allow(...), not b.allow(...)
breaker "orders" has no key= in nginx.conf
breaker "tenants" is keyed: give a key
key must be a string, got number
report() takes true (success) or false (failure), got string
latency must be a non-negative number of milliseconds, got -5
use permit:report(...), not permit.report(...)
invalid mode sideways, expected enforce, dry_run, force_open, force_closed, off or default
breaker "orders" has no key= in nginx.conf
still: closed
--- no_error_log
[error]
[alert]



=== TEST 14: an uncaught bad argument fails the request (500), not the worker
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_ORDERS
    location = /lua {
        content_by_lua_block {
            local breaker = require "resty.resilience.breaker"
            assert(breaker.new("orders")):allow():report(nil)
        }
    }
--- request
GET /lua
--- error_code: 500
--- error_log
report() takes true (success) or false (failure), got nil
--- no_error_log
[alert]
[crit]
exited on signal
