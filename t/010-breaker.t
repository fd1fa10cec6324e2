# ngx_http_breaker_module: trip policies, half-open probes, backoff,
# bulkhead, fallback, modes, per-key breakers, what is not a failure,
# reload, metrics.  Upstreams are locations of the same nginx
# (/backend/<status>), a closed port, and a slow server from t/lib.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(http_get slow_server hold_request);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_CLOSED_PORT} = free_port();
$ENV{"TEST_NGINX_SLOW${_}_PORT"} = free_port() for 1 .. 8;

our $Backends = <<'_EOC_';
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location ~ ^/backend/502$ { return 502; }
    location ~ ^/backend/503$ { return 503; }
    location ~ ^/backend/404$ { return 404; }
_EOC_

$ENV{TEST_NGINX_BACKENDS} = $Backends;

run_tests();

__DATA__

=== TEST 1: a closed breaker lets requests through; the variables say so
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
        add_header X-Breaker "$breaker_name $breaker_state" always;
    }
--- request
GET /api
--- response_body
ok
--- response_headers
X-Breaker: orders closed
--- no_error_log
[error]
[warn]



=== TEST 2: consecutive failures open the breaker: 503 with Retry-After
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 3;
        breaker_failure_rate off;
        breaker_open 30s jitter=0%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
        add_header X-Breaker $breaker_state always;
    }
--- request eval
["GET /api", "GET /api", "GET /api", "GET /api", "GET /api"]
--- error_code eval
[502, 502, 502, 503, 503]
--- response_headers eval
["X-Breaker: closed\n!Retry-After", "X-Breaker: closed",
 "X-Breaker: closed", "X-Breaker: open\nRetry-After: 30",
 "X-Breaker: open\nRetry-After: 30"]
--- no_error_log
[alert]
[crit]



=== TEST 3: the trip is logged at warn with the breaker, the reason and the open time
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 2;
        breaker_open 10s jitter=0%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/503;
    }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api") for 1 .. 2;
--- request
GET /api
--- error_code: 503
--- error_log eval
qr/\[warn\] .*breaker "orders" opened for 10000 ms \(trip 1\): 2 failures in a row >= 2/
--- no_error_log
[alert]



=== TEST 4: a connection error counts (error), with nginx's own 502
--- http_config
    breaker_zone breakers 1m;
--- config
    location /api {
        breaker down zone=breakers;
        breaker_consecutive_failures 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_CLOSED_PORT/;
    }
--- request eval
["GET /api", "GET /api", "GET /api"]
--- error_code eval
[502, 502, 503]
--- no_error_log
[alert]
[crit]



=== TEST 5: the failure rate trips once min_requests were seen
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker rate zone=breakers;
        breaker_consecutive_failures off;
        breaker_min_requests 4;
        breaker_failure_rate 50%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- request eval
["GET /api?s=502", "GET /api?s=200", "GET /api?s=502", "GET /api?s=200",
 "GET /api?s=200"]
--- error_code eval
[502, 200, 502, 200, 503]
--- no_error_log
[alert]



=== TEST 6: min_requests holds a quiet breaker closed
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker quiet zone=breakers;
        breaker_consecutive_failures off;
        breaker_min_requests 10;
        breaker_failure_rate 10%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- request eval
[("GET /api") x 9]
--- error_code eval
[(502) x 9]
--- no_error_log
opened



=== TEST 7: breaker_failure decides what fails: 404 counts, 502 does not
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker strict zone=breakers;
        breaker_consecutive_failures 2;
        breaker_failure 404 500-501;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- request eval
["GET /api?s=502", "GET /api?s=502", "GET /api?s=502", "GET /api?s=404",
 "GET /api?s=404", "GET /api?s=200"]
--- error_code eval
[502, 502, 502, 404, 404, 503]
--- no_error_log
[alert]



=== TEST 8: half-open: after the open time, N successful probes close it
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker probe zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
        add_header X-Breaker $breaker_state always;
    }
    location /sleep {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW1_PORT/;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW1_PORT}, 1.2, 10);
--- request eval
["GET /api?s=502", "GET /api?s=200", "GET /sleep", "GET /api?s=200",
 "GET /api?s=200", "GET /api?s=200"]
--- error_code eval
[502, 503, 200, 200, 200, 200]
--- response_headers eval
["X-Breaker: closed", "X-Breaker: open", "", "X-Breaker: half_open",
 "X-Breaker: half_open", "X-Breaker: closed"]
--- timeout: 5
--- no_error_log
[alert]



=== TEST 9: half-open: a failed probe reopens it, for twice as long
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker probe zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 1s max=10s jitter=0%;
        breaker_half_open 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location /sleep {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW2_PORT/;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW2_PORT}, 1.2, 10);
--- request eval
["GET /api?s=502", "GET /sleep", "GET /api?s=502", "GET /api?s=200"]
--- error_code eval
[502, 200, 502, 503]
--- response_headers eval
["", "", "", "Retry-After: 2"]
--- timeout: 5
--- no_error_log
[alert]



=== TEST 10: backoff: the trips in a row and the cap are logged
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker backoff zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 300ms max=500ms jitter=0%;
        breaker_half_open 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- init
for (1 .. 3) {
    NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api");
    select(undef, undef, undef, 0.6);
}
--- request
GET /api
--- error_code: 502
--- grep_error_log eval
qr/opened for \d+ ms \(trip \d+\)/
--- grep_error_log_out
opened for 300 ms (trip 1)
opened for 500 ms (trip 2)
opened for 500 ms (trip 3)
opened for 500 ms (trip 4)
--- no_error_log
[alert]



=== TEST 11: a hung probe's lease expires, and another probe gets in
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker lease zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 200ms jitter=0%;
        breaker_half_open 1 timeout=500ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location /hung {
        breaker lease zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 200ms jitter=0%;
        breaker_half_open 1 timeout=500ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW3_PORT/;
        proxy_read_timeout 10s;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW3_PORT}, 5, 8);
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api?s=502");
select(undef, undef, undef, 0.3);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/hung", 6);
select(undef, undef, undef, 0.2);
--- request eval
["GET /api?s=200", "GET /hung"]
--- error_code eval
[503, 503]
--- no_error_log
[alert]



=== TEST 12: the lease, once expired, frees the probe slot
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker lease zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 200ms jitter=0%;
        breaker_half_open 1 timeout=300ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location /hung {
        breaker lease zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 200ms jitter=0%;
        breaker_half_open 1 timeout=300ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW4_PORT/;
        proxy_read_timeout 10s;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW4_PORT}, 5, 8);
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api?s=502");
select(undef, undef, undef, 0.3);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/hung", 6);
select(undef, undef, undef, 0.6);
--- request
GET /api?s=200
--- response_body
ok
--- error_log eval
qr/\[warn\] .*breaker "lease" closed: the probes succeeded/
--- no_error_log
[alert]



=== TEST 13: bulkhead: max_concurrent turns the extra request away, 503
--- http_config
    breaker_zone breakers 1m;
--- config
    location /slow {
        breaker bulk zone=breakers;
        breaker_max_concurrent 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW5_PORT/;
        add_header X-Breaker $breaker_state always;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW5_PORT}, 1, 6);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/slow", 3);
select(undef, undef, undef, 0.3);
--- request
GET /slow
--- error_code: 503
--- response_headers
X-Breaker: closed
Retry-After:
--- no_error_log
[alert]



=== TEST 14: bulkhead: a client abort gives its slot back
--- http_config
    breaker_zone breakers 1m;
--- config
    location /slow {
        breaker bulk zone=breakers;
        breaker_max_concurrent 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW6_PORT/;
    }
    location /status { resilience_status; }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW6_PORT}, 2, 6);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/slow", 0.3);
select(undef, undef, undef, 0.8);
--- request
GET /status
--- response_body_like eval
qr/nginx_resilience_breaker_inflight\{breaker="bulk",key=""\} 0\n/
--- no_error_log
[alert]



=== TEST 15: fallback to a named location
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 1;
        breaker_fallback @degraded;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location @degraded {
        return 200 "cached answer from $breaker_name\n";
    }
--- request eval
["GET /api", "GET /api"]
--- error_code eval
[502, 200]
--- response_body eval
[qr/502 Bad Gateway/, "cached answer from orders\n"]
--- no_error_log
[alert]



=== TEST 16: fallback to another status
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 1;
        breaker_fallback 429;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- request eval
["GET /api", "GET /api"]
--- error_code eval
[502, 429]
--- no_error_log
[alert]



=== TEST 17: dry_run trips, logs and counts, but never rejects
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker dry zone=breakers;
        breaker_consecutive_failures 1;
        breaker_mode dry_run;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /status { resilience_status; }
--- request eval
["GET /api", "GET /api", "GET /api", "GET /status"]
--- error_code eval
[502, 502, 502, 200]
--- response_body_like eval
[qr//, qr//, qr//,
 qr/nginx_resilience_breaker_requests_total\{breaker="dry",key="",outcome="dry_run_rejected"\} 2\n/]
--- no_error_log
[alert]



=== TEST 18: force_open rejects everything, without Retry-After
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker forced zone=breakers;
        breaker_mode force_open;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
--- request
GET /api
--- error_code: 503
--- response_headers
!Retry-After
--- no_error_log
[alert]



=== TEST 19: force_closed never trips
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker forced zone=breakers;
        breaker_consecutive_failures 1;
        breaker_mode force_closed;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- request eval
["GET /api", "GET /api", "GET /api"]
--- error_code eval
[502, 502, 502]
--- no_error_log
opened



=== TEST 20: per-key breakers: one tenant's failures do not open another's
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker tenants zone=breakers key=$arg_tenant;
        breaker_consecutive_failures 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- request eval
["GET /api?tenant=a&s=502", "GET /api?tenant=a&s=502",
 "GET /api?tenant=a&s=200", "GET /api?tenant=b&s=200",
 "GET /api?s=502", "GET /api?s=502", "GET /api?s=200"]
--- error_code eval
[502, 502, 503, 200, 502, 502, 200]
--- no_error_log
[alert]



=== TEST 21: a hostile, huge key is hashed, not stored whole
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker tenants zone=breakers key=$http_x_tenant;
        breaker_consecutive_failures 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /status { resilience_status; }
--- more_headers eval
"X-Tenant: " . ("x" x 4000)
--- request eval
["GET /api", "GET /api", "GET /status"]
--- error_code eval
[502, 503, 200]
--- response_body_like eval
[qr//, qr//, qr/nginx_resilience_breaker_state\{breaker="tenants",key="[0-9a-f]{32}"\} 1\n/]
--- no_error_log
[alert]



=== TEST 22: a full zone evicts idle keys and never rejects
--- http_config
    breaker_zone small 32k;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker tenants zone=small key=$arg_k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location /status { resilience_status; }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api?k=key$_") for 1 .. 300;
--- request
GET /status
--- response_body_like eval
qr/nginx_resilience_breaker_zone_evictions_total\{zone="small"\} [1-9]\d*\n/
--- no_error_log
[alert]



=== TEST 23: a client abort (499) is not a failure
--- http_config
    breaker_zone breakers 1m;
--- config
    location /slow {
        breaker aborts zone=breakers;
        breaker_consecutive_failures 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW7_PORT/;
    }
    location /status { resilience_status; }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW7_PORT}, 1, 4);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/slow", 0.2) for 1 .. 3;
select(undef, undef, undef, 0.6);
--- request
GET /status
--- response_body_like eval
qr/nginx_resilience_breaker_state\{breaker="aborts",key=""\} 0\n(.|\n)*outcome="failure"\} 0\n/
--- no_error_log
opened



=== TEST 24: a request rejected by another module is not a failure
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker guarded zone=breakers;
        breaker_consecutive_failures 1;
        deny all;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- request eval
["GET /api", "GET /api", "GET /api"]
--- error_code eval
[403, 403, 403]
--- no_error_log
opened



=== TEST 25: the status endpoint shows state, outcomes and transitions
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location /status { resilience_status; }
--- request eval
["GET /api?s=200", "GET /api?s=502", "GET /api?s=502", "GET /api?s=200",
 "GET /status"]
--- error_code eval
[200, 502, 502, 503, 200]
--- response_body_like eval
[qr//, qr//, qr//, qr//,
 qr/breaker_state\{breaker="orders",key=""\} 1\n(.|\n)*outcome="success"\} 1\n(.|\n)*outcome="failure"\} 2\n(.|\n)*outcome="rejected"\} 1\n(.|\n)*breaker_transitions_total\{breaker="orders",key=""\} 1\n(.|\n)*breaker_open_until_seconds\{breaker="orders",key=""\} \d{10}/]
--- no_error_log
[alert]



=== TEST 26: breaker_qps_policy: a quiet upstream is held to its band's rate
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker bands zone=breakers;
        breaker_window 10s;
        breaker_consecutive_failures off;
        breaker_min_requests 4;
        breaker_failure_rate 30%;
        breaker_qps_policy 0-1:80% 1-:30%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- request eval
["GET /api?s=502", "GET /api?s=200", "GET /api?s=502", "GET /api?s=200",
 "GET /api?s=200"]
--- error_code eval
[502, 200, 502, 200, 200]
--- no_error_log
opened



=== TEST 27: breaker_qps_policy: a busy one is held to the busy band's rate
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker bands zone=breakers;
        breaker_window 2s;
        breaker_consecutive_failures off;
        breaker_min_requests 4;
        breaker_qps_policy 0-1:80% 1-:30%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- request eval
["GET /api?s=502", "GET /api?s=200", "GET /api?s=502", "GET /api?s=200",
 "GET /api?s=200"]
--- error_code eval
[502, 200, 502, 200, 503]
--- no_error_log
[alert]



=== TEST 28: an outcome from before a transition is ignored (generations)
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /fast {
        breaker gen zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 200ms jitter=0%;
        breaker_half_open 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location /slowfail {
        breaker gen zone=breakers;
        breaker_consecutive_failures 1;
        breaker_open 200ms jitter=0%;
        breaker_half_open 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW8_PORT/;
        proxy_read_timeout 600ms;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW8_PORT}, 2, 5);
# admitted while closed, it times out (a failure) after the breaker has
# opened, turned half-open and closed again: three generations later
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/slowfail", 2);
select(undef, undef, undef, 0.1);
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/fast?s=502");
select(undef, undef, undef, 0.25);
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/fast?s=200");
select(undef, undef, undef, 0.6);
--- request
GET /fast?s=200
--- response_body
ok
--- grep_error_log eval
qr/breaker "gen" (opened|closed)/
--- grep_error_log_out
breaker "gen" opened
breaker "gen" closed
--- no_error_log
[alert]



=== TEST 29: a request rejected by limit_req is not a failure
--- http_config
    breaker_zone breakers 1m;
    limit_req_zone $server_name zone=one:1m rate=1r/m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        limit_req zone=one;
        limit_req_status 429;
        breaker limited zone=breakers;
        breaker_consecutive_failures 1;
        breaker_failure 429 500-599;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location /status { resilience_status; }
--- request eval
["GET /api", "GET /api", "GET /api", "GET /status"]
--- error_code eval
[200, 429, 429, 200]
--- response_body_like eval
[qr//, qr//, qr//,
 qr/breaker_state\{breaker="limited",key=""\} 0\n(.|\n)*outcome="failure"\} 0\n/]
--- no_error_log
[alert]



=== TEST 30: a zone full of open breakers lets new keys through untracked, and says so once
--- http_config
    breaker_zone tiny 32k;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker crowd zone=tiny key=$arg_k;
        breaker_consecutive_failures 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /status { resilience_status; }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api?k=key$_") for 1 .. 200;
--- request eval
["GET /api?k=key1", "GET /api?k=brand-new", "GET /status"]
--- error_code eval
[503, 502, 200]
--- response_body_like eval
[qr//, qr//, qr/nginx_resilience_breaker_zone_full_total\{zone="tiny"\} [1-9]\d*\n/]
--- grep_error_log eval
qr/breaker_zone "tiny" is full/
--- grep_error_log_out eval
[qr/\A(breaker_zone "tiny" is full\n)?\z/, qr/\A\z/, qr/\A\z/]
--- no_error_log
[alert]



=== TEST 31: error_page 502 = @fallback over a dead backend: the failures are the admitting location's, and the breaker opens
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker hidden zone=breakers;
        breaker_consecutive_failures 3;
        breaker_open 30s jitter=0%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_CLOSED_PORT;
        error_page 502 = @fallback;
    }
    location @fallback {
        rewrite ^ /backend/200 break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
    location /status { resilience_status; }
--- request eval
["GET /api", "GET /api", "GET /api", "GET /api", "GET /status"]
--- error_code eval
[200, 200, 200, 503, 200]
--- response_body_like eval
[qr/ok/, qr/ok/, qr/ok/, qr/503/,
 qr/breaker_requests_total\{breaker="hidden",key="",outcome="failure"\} 3\n/]
--- no_error_log
[alert]



=== TEST 32: a fallback's own upstream failing says nothing about the admitting location's success
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker fine zone=breakers;
        breaker_consecutive_failures 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/404;
        proxy_intercept_errors on;
        error_page 404 = @fallback;
    }
    location @fallback {
        rewrite ^ /backend/502 break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
    location /status { resilience_status; }
--- request eval
["GET /api", "GET /api", "GET /api", "GET /status"]
--- error_code eval
[502, 502, 502, 200]
--- response_body_like eval
[qr//, qr//, qr//,
 qr/breaker_requests_total\{breaker="fine",key="",outcome="success"\} 3\n/]
--- no_error_log
[alert]



=== TEST 33: $breaker_state in access_log is the state the request found, even after its outcome tripped the breaker
--- http_config
    breaker_zone breakers 1m;
    log_format bstate "bstate=$breaker_state";
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker tripping zone=breakers key=$arg_k;
        breaker_consecutive_failures 1;
        access_log logs/error.log bstate;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- request
GET /api?k=a
--- error_code: 502
--- error_log
bstate=closed
--- no_error_log
bstate=open
[alert]
