# lua-compat: resty.resilience.healthcheck over the upstream discovery
# module: status_page() in resty.upstream.healthcheck's layout, the peers
# as Lua tables, the opt-in resty.upstream.healthcheck shim, bad arguments.

use lib 't/lib';
use NR::Lua;
use NR::Redis qw(free_port);
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(A B CLOSED);

$ENV{TEST_NGINX_UPSTREAMS} = <<"_EOC_";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        location / { return 200 "A\\n"; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_B_PORT};
        location / { return 200 "B\\n"; }
    }
    upstream api {
        health_check type=tcp interval=200ms fails=1;
        server 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        server 127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT};
        server 127.0.0.1:$ENV{TEST_NGINX_B_PORT} backup;
    }
    upstream plain {
        health_check_panic on;
        server 127.0.0.1:$ENV{TEST_NGINX_B_PORT};
    }
    upstream stock {
        server 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        server 127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT} down;
        server 127.0.0.1:$ENV{TEST_NGINX_B_PORT} backup;
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: status_page() in resty.upstream.healthcheck's layout, upstreams without checkers listed too
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    $TEST_NGINX_UPSTREAMS
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(0.5)
            local hc = require "resty.resilience.healthcheck"
            ngx.print(hc.status_page())
        }
    }
--- request
GET /t
--- response_body eval
"Upstream api
    Primary Peers
        127.0.0.1:$ENV{TEST_NGINX_A_PORT} UP
        127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT} DOWN
    Backup Peers
        127.0.0.1:$ENV{TEST_NGINX_B_PORT} UP

Upstream plain (NO checkers)
    Primary Peers
        127.0.0.1:$ENV{TEST_NGINX_B_PORT} UP
    Backup Peers

Upstream stock (NO checkers)
    Primary Peers
        127.0.0.1:$ENV{TEST_NGINX_A_PORT} UP
        127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT} DOWN
    Backup Peers
        127.0.0.1:$ENV{TEST_NGINX_B_PORT} UP
"
--- no_error_log
[error]



=== TEST 2: the peers as Lua tables, and upstreams()
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    $TEST_NGINX_UPSTREAMS
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(0.5)
            local hc = require "resty.resilience.healthcheck"
            ngx.say(table.concat(hc.upstreams(), ","))
            for _, p in ipairs(hc.peers("api")) do
                ngx.say(p.name:match(":(%d+)$") == nil and "?" or "peer", " ",
                        p.state, " ", tostring(p.backup), " ", p.source, " ",
                        p.weight, " ", p.last_check, " ", p.fails > 0)
            end
            ngx.say(select(2, hc.peers("nope")))
        }
    }
--- request
GET /t
--- response_body
api,plain
peer up false static 1 passed false
peer down false static 1 failed true
peer up true static 1 passed false
no health-checked upstream "nope"
--- no_error_log
[error]



=== TEST 3: the resty.upstream.healthcheck shim: spawn_checker() checks the upstream, status_page() as ours
--- http_config
    lua_package_path "$TEST_NGINX_LUA_COMPAT";
    $TEST_NGINX_UPSTREAMS
--- config
    location = /t {
        content_by_lua_block {
            local hc = require "resty.upstream.healthcheck"
            local ok, err = hc.spawn_checker{ shm = "healthcheck",
                                              upstream = "api",
                                              type = "http" }
            ngx.say(ok, " ", err)
            ok, err = hc.spawn_checker{ upstream = "nope" }
            ngx.say(ok, " ", err)
            ngx.say(hc.status_page() == require("resty.resilience.healthcheck").status_page())
        }
    }
--- request
GET /t
--- response_body
true nil
nil no health-checked upstream "nope": add "health_check" to its upstream block
true
--- error_log
is checked by health_check in nginx.conf



=== TEST 4: bad arguments are Lua errors, never a crash
--- http_config
    lua_package_path "$TEST_NGINX_LUA_PATH";
    $TEST_NGINX_UPSTREAMS
--- config
    location = /t {
        content_by_lua_block {
            local hc = require "resty.resilience.healthcheck"
            local ok, err = pcall(hc.peers, 42)
            ngx.say(ok, " ", err)
        }
    }
--- request
GET /t
--- response_body_like
^false .*peers\(\): the upstream's name must be a string, got number
--- no_error_log
[alert]



=== TEST 5: prometheus_status_page() with resty.upstream.healthcheck's metric names, through the shim
--- http_config
    lua_package_path "$TEST_NGINX_LUA_COMPAT";
    $TEST_NGINX_UPSTREAMS
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(0.5)
            local hc = require "resty.upstream.healthcheck"
            ngx.print(hc.prometheus_status_page())
        }
    }
--- request
GET /t
--- response_body eval
"# HELP nginx_upstream_status_info The running status of nginx upstream
# TYPE nginx_upstream_status_info gauge
nginx_upstream_status_info{name=\"api\",endpoint=\"127.0.0.1:$ENV{TEST_NGINX_A_PORT}\",status=\"UP\",role=\"PRIMARY\"} 1
nginx_upstream_status_info{name=\"api\",endpoint=\"127.0.0.1:$ENV{TEST_NGINX_A_PORT}\",status=\"DOWN\",role=\"PRIMARY\"} 0
nginx_upstream_status_info{name=\"api\",endpoint=\"127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}\",status=\"UP\",role=\"PRIMARY\"} 0
nginx_upstream_status_info{name=\"api\",endpoint=\"127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}\",status=\"DOWN\",role=\"PRIMARY\"} 1
nginx_upstream_status_info{name=\"api\",endpoint=\"127.0.0.1:$ENV{TEST_NGINX_B_PORT}\",status=\"UP\",role=\"BACKUP\"} 1
nginx_upstream_status_info{name=\"api\",endpoint=\"127.0.0.1:$ENV{TEST_NGINX_B_PORT}\",status=\"DOWN\",role=\"BACKUP\"} 0
nginx_upstream_status_info{name=\"api\",status=\"UP\"} 1
nginx_upstream_status_info{name=\"api\",status=\"DOWN\"} 0
nginx_upstream_status_info{name=\"api\",status=\"UNKNOWN\"} 0
nginx_upstream_status_info{name=\"plain\",status=\"UP\"} 0
nginx_upstream_status_info{name=\"plain\",status=\"DOWN\"} 0
nginx_upstream_status_info{name=\"plain\",status=\"UNKNOWN\"} 1
nginx_upstream_status_info{name=\"stock\",status=\"UP\"} 0
nginx_upstream_status_info{name=\"stock\",status=\"DOWN\"} 0
nginx_upstream_status_info{name=\"stock\",status=\"UNKNOWN\"} 1
"
--- no_error_log
[error]
