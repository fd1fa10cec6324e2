# lua-compat: resty.resilience.deadline, the request's budget as
# ngx_http_deadline_module computes it, from OpenResty's Lua module:
# remaining() against $deadline_remaining_ms, budgets from headers and
# from "deadline", no deadline, a spent one, the cosocket-timeout helper
# cutting a slow read at the deadline, and bad arguments as Lua errors.

use lib 't/lib';
use NR::Lua;
use NR::Redis qw(free_port);
use NR::Net qw(slow_server);
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_SILENT_PORT} = free_port();

run_tests();

__DATA__

=== TEST 1: the default budget ("deadline 2s"): remaining() as $deadline_remaining_ms
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        deadline 2s;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            local left = deadline.remaining()
            local var = tonumber(ngx.var.deadline_remaining_ms)
            ngx.say(left > 1900 and left <= 2000, " ",
                    math.abs(left - var) <= 1, " ", deadline.expired())
        }
    }
--- request
GET /t
--- response_body
true true false
--- no_error_log
[error]



=== TEST 2: a budget from a trusted header, counted from the request's arrival
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        deadline_from X-Timeout-Ms ms;
        deadline_offset 20ms;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            local a = deadline.remaining()
            ngx.sleep(0.1)
            ngx.update_time()
            local b = deadline.remaining()
            ngx.say(a > 100 and a <= 280, " ", a - b >= 90 and a - b <= 400)
        }
    }
--- request
GET /t
--- more_headers
X-Timeout-Ms: 300
--- response_body
true true
--- no_error_log
[error]



=== TEST 3: no deadline: remaining() is nil, timeouts() leaves the values alone
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            ngx.say(deadline.remaining(), " ", deadline.expired(), " ",
                    table.concat({ deadline.timeouts(100, 0, 5000) }, ","))
        }
    }
--- request
GET /t
--- response_body
nil false 100,0,5000
--- no_error_log
[error]



=== TEST 4: a spent budget: 0, expired, and no timeouts to hand out
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        deadline_from X-Timeout-Ms ms;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            ngx.sleep(0.05)
            ngx.update_time()
            local sock = ngx.socket.tcp()
            ngx.say(deadline.remaining(), " ", deadline.expired(), " ",
                    tostring(deadline.timeouts(100, 100, 100)), " ",
                    select(2, deadline.settimeouts(sock, 100, 100, 100)))
        }
    }
--- request
GET /t
--- more_headers
X-Timeout-Ms: 20
--- response_body
0 true nil deadline exceeded
--- no_error_log
[error]



=== TEST 5: timeouts() clamps each timeout to the time left
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        deadline 500ms;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            local c, s, r = deadline.timeouts(1000, 50, 0)
            ngx.say(c > 450 and c <= 500, " ", s, " ", r == c)
        }
    }
--- request
GET /t
--- response_body
true 50 true
--- no_error_log
[error]



=== TEST 6: settimeouts(): a read from a silent upstream ends at the deadline, not at its own timeout
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SILENT_PORT}, 2, 3);
--- config
    location = /t {
        deadline 300ms;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            local sock = ngx.socket.tcp()
            assert(deadline.settimeouts(sock, 1000, 1000, 10000))
            assert(sock:connect("127.0.0.1", $TEST_NGINX_SILENT_PORT))
            assert(sock:send("GET / HTTP/1.0\r\nHost: x\r\n\r\n"))
            local t0 = ngx.now()
            local line, err = sock:receive("*l")
            ngx.update_time()
            local took = ngx.now() - t0
            ngx.say(tostring(line), " ", err, " ", took > 0.2 and took < 0.5)
        }
    }
--- request
GET /t
--- response_body
nil timeout true
--- timeout: 5



=== TEST 7: outside a request (a timer) and with bad values: Lua errors with clear messages
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    lua_shared_dict result 64k;
--- config
    location = /t {
        deadline 1s;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            local function e(f, ...)
                local ok, err = pcall(f, ...)
                ngx.say(ok and "no error" or (err:gsub("^.-:%d+: ", "")))
            end
            e(deadline.timeouts, "1s", 10, 10)
            e(deadline.timeouts, 10, -1, 10)
            e(deadline.settimeouts, nil, 10, 10, 10)
            ngx.timer.at(0, function ()
                local ok, err = pcall(deadline.remaining)
                ngx.shared.result:set("timer", err)
            end)
            ngx.sleep(0.05)
            ngx.say((ngx.shared.result:get("timer"):gsub("^.-:%d+: ", "")))
        }
    }
--- request
GET /t
--- response_body
connect timeout must be a non-negative number of milliseconds, got 1s
send timeout must be a non-negative number of milliseconds, got -1
settimeouts() takes a cosocket (ngx.socket.tcp()) first
the deadline belongs to a request: not available in the timer phase
--- no_error_log
[error]
[alert]



=== TEST 8: a spent budget does not stop a Lua location: its code runs and sees it
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        deadline_from X-Timeout-Ms ms;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            ngx.say("ran: ", deadline.remaining(), " ", deadline.expired())
        }
    }
--- request
GET /t
--- more_headers
X-Timeout-Ms: 0
--- response_body
ran: 0 true
--- no_error_log
[error]



=== TEST 9: timeouts() rounds a fraction of a millisecond up, never to 0 (a cosocket's "default")
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
--- config
    location = /t {
        deadline 2s;
        content_by_lua_block {
            local deadline = require "resty.resilience.deadline"
            ngx.say(table.concat({deadline.timeouts(0.5, 2.5, 0.001)}, " "))
        }
    }
--- request
GET /t
--- response_body
1 3 1
--- no_error_log
[error]
