# ngx_http_deadline_module: sources and formats (hostile values included),
# trust, strictest-wins, cap, offset and min, failing fast (HTTP and
# gRPC), an upstream cut at the budget (not retried past it: t/027 TEST
# 5, three peers, which fails when it is), propagation, and configuration
# errors.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(slow_server);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{"TEST_NGINX_SLOW${_}_PORT"} = free_port() for 1 .. 4;

$ENV{TEST_NGINX_ECHO} = <<'_EOC_';
    location /echo {
        return 200 "grpc-timeout=$http_grpc_timeout x-deadline-ms=$http_x_deadline_ms\n";
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a default budget, anchored at arrival, in the variables
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 3s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left $deadline_remaining_ms always;
        add_header X-Grpc $deadline_grpc_timeout always;
        add_header X-Expired $deadline_expired always;
    }
--- request
GET /t
--- response_headers_like
X-Left: (2[5-9]\d\d|3000)
X-Grpc: (2[5-9]\d\d|3000)m
X-Expired: 0
--- no_error_log
[error]



=== TEST 2: grpc-timeout in each unit
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left $deadline_remaining_ms always;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["grpc-timeout: 1H", "grpc-timeout: 2M", "grpc-timeout: 5S",
 "grpc-timeout: 700m", "grpc-timeout: 900000u", "grpc-timeout: 80000000n"]
--- response_headers_like eval
["X-Left: (3599\\d\\d\\d|3600000)", "X-Left: (119\\d\\d\\d|120000)",
 "X-Left: (49\\d\\d|5000)", "X-Left: (6\\d\\d|700)", "X-Left: (8\\d\\d|900)",
 "X-Left: (7\\d|80)"]
--- no_error_log
[error]



=== TEST 3: hostile grpc-timeout values are ignored, with an info line
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left "[$deadline_remaining_ms]" always;
    }
--- request eval
[("GET /t") x 7]
--- more_headers eval
["grpc-timeout: 123456789m", "grpc-timeout: 10x", "grpc-timeout: -5m",
 "grpc-timeout: ", "grpc-timeout: m", "grpc-timeout: 5 m",
 "grpc-timeout: 99999999999999999999999H"]
--- response_headers eval
[("X-Left: []") x 7]
--- no_error_log
[error]
[alert]



=== TEST 4: the ignored value is logged at info
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- more_headers
grpc-timeout: 123456789m
--- request
GET /t
--- error_log
deadline: ignored "grpc-timeout: 123456789m", not a valid grpc value



=== TEST 5: ms, s and epoch_ms
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from x-ms ms;
        deadline_from x-s s;
        deadline_from x-epoch epoch_ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left "[$deadline_remaining_ms]" always;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["x-ms: 1500", "x-s: 2.5", "x-epoch: " . (int(Time::HiRes::time() * 1000) + 3600000),
 "x-ms: -3", "x-epoch: 99999999999999"]
--- response_headers_like eval
["X-Left: \\[(1[0-4]\\d\\d|1500)\\]", "X-Left: \\[(2[0-4]\\d\\d|2500)\\]",
 "X-Left: \\[(3[45]\\d\\d\\d\\d\\d|3600000)\\]", "X-Left: \\[\\]", "X-Left: \\[\\]"]
--- no_error_log
[error]



=== TEST 6: repeated headers that disagree are ignored; that agree, used
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from x-ms ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left "[$deadline_remaining_ms]" always;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["x-ms: 1500\nx-ms: 900", "x-ms: 1500\nx-ms: 1500"]
--- response_headers_like eval
["X-Left: \\[\\]", "X-Left: \\[(14\\d\\d|1500)\\]"]
--- no_error_log
[error]



=== TEST 7: the strictest source wins; untrusted sources are ignored
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        deadline_from x-ms ms trusted=$http_x_internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left "[$deadline_remaining_ms]" always;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["grpc-timeout: 5S\nx-ms: 800\nx-internal: 1",
 "grpc-timeout: 5S\nx-ms: 800",
 "grpc-timeout: 5S\nx-ms: 800\nx-internal: 0"]
--- response_headers_like eval
["X-Left: \\[([4-7]\\d\\d|800)\\]", "X-Left: \\[(4[5-9]\\d\\d|5000)\\]",
 "X-Left: \\[(4[5-9]\\d\\d|5000)\\]"]
--- no_error_log
[error]



=== TEST 8: deadline_max caps, deadline_offset takes off
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        deadline_max 2s;
        deadline_offset 500ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Left "[$deadline_remaining_ms]" always;
    }
--- more_headers
grpc-timeout: 1H
--- request
GET /t
--- response_headers_like
X-Left: \[(1[0-4]\d\d|1500)\]
--- no_error_log
[error]



=== TEST 9: too little left: 504 without contacting the upstream
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        deadline_min 50ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["grpc-timeout: 20m", "grpc-timeout: 0m"]
--- error_code eval
[504, 504]
--- response_body_like eval
[qr/504 Gateway Time-out/, qr/504 Gateway Time-out/]
--- no_error_log
[error]



=== TEST 10: deadline_status changes the answer
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        deadline_status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- more_headers
grpc-timeout: 0m
--- request
GET /t
--- error_code: 503
--- no_error_log
[error]



=== TEST 11: for gRPC, the gRPC answer: 200, grpc-status 4, no body
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- more_headers
grpc-timeout: 0m
Content-Type: application/grpc+proto
--- request
POST /t
xxxx
--- error_code: 200
--- response_headers
Content-Type: application/grpc
grpc-status: 4
grpc-message: deadline exceeded before the upstream
--- response_body chomp
--- no_error_log
[error]



=== TEST 12: propagation: the upstream gets what is left, not what came
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        deadline_offset 100ms;
        deadline_propagate grpc-timeout grpc;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /ms {
        deadline 2s;
        deadline_propagate X-Deadline-Ms ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /ms"]
--- more_headers eval
["grpc-timeout: 1S", ""]
--- response_body_like eval
[qr/\Agrpc-timeout=(8\d\dm|900m) x-deadline-ms=\n\z/,
 qr/\Agrpc-timeout= x-deadline-ms=(19\d\d|2000)\n\z/]
--- no_error_log
[error]



=== TEST 13: a slow upstream is cut at the budget, not at proxy_read_timeout
--- config
    location /t {
        deadline 500ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW1_PORT/;
        proxy_read_timeout 60s;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW1_PORT}, 5, 8);
--- request
GET /t
--- error_code: 504
--- timeout: 2
--- error_log
upstream timed out



=== TEST 15: a location without a deadline keeps the stock timeouts
--- config
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW4_PORT/;
        proxy_read_timeout 60s;
        add_header X-Left "[$deadline_remaining_ms]" always;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW4_PORT}, 1, 4);
--- request
GET /t
--- response_body
slow
--- response_headers
X-Left: []
--- timeout: 3
--- no_error_log
[error]



=== TEST 16: deadline_from: an unknown format
--- config
    location /x { deadline_from grpc-timeout minutes; }
--- must_die
--- error_log
"deadline_from" directive: invalid format "minutes", expected grpc, ms, s or epoch_ms



=== TEST 17: deadline_from: an unknown parameter
--- config
    location /x { deadline_from grpc-timeout grpc trust=1; }
--- must_die
--- error_log
"deadline_from" directive: invalid parameter "trust=1"



=== TEST 18: deadline: a bad duration
--- config
    location /x { deadline soon; }
--- must_die
--- error_log
"deadline" directive: invalid duration "soon"



=== TEST 19: deadline: zero
--- config
    location /x { deadline 0; }
--- must_die
--- error_log
"deadline" directive: "0" must be more than 0 and at most 1d (or "off")



=== TEST 20: deadline_status: not an error status
--- config
    location /x { deadline_status 200; }
--- must_die
--- error_log
"deadline_status" directive: invalid status "200", expected 400 to 599



=== TEST 21: deadline_propagate: s is not a format to send
--- config
    location /x { deadline_propagate x-deadline s; }
--- must_die
--- error_log
"deadline_propagate" directive: invalid format "s", expected grpc, ms or epoch_ms



=== TEST 22: deadline_max: more than a day
--- config
    location /x { deadline_max 2d; }
--- must_die
--- error_log
"deadline_max" directive: "2d" is more than 1d



=== TEST 23: time spent in a limit_req delay counts: the delayed request passes on less
The second request comes g ms after the first and limit_req holds it until
1 s after the first: its budget shrinks by the 1000 - g ms it waited, so
the upstream is told 2000 + g ms or less, where without the delay it would
be told about 3000.  Asserted: at least 500 ms less (g under 500 ms).
--- http_config
    limit_req_zone $binary_remote_addr zone=slowdown:1m rate=1r/s;
--- config
    $TEST_NGINX_ECHO
    location /t {
        limit_req zone=slowdown burst=5;
        deadline 3s;
        deadline_propagate X-Deadline-Ms ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /t"]
--- response_body_like eval
[qr/\Agrpc-timeout= x-deadline-ms=(29\d\d|3000)\n\z/,
 qr/\Agrpc-timeout= x-deadline-ms=(1[5-9]\d\d|2[0-4]\d\d|2500)\n\z/]
--- no_error_log
[error]



=== TEST 24: a limit_req delay longer than the budget: failing fast after it
--- http_config
    limit_req_zone $binary_remote_addr zone=slowdown:1m rate=1r/s;
--- config
    $TEST_NGINX_ECHO
    location /t {
        limit_req zone=slowdown burst=5;
        deadline 500ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        add_header X-Expired $deadline_expired always;
    }
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 504]
--- response_headers eval
["X-Expired: 0", "X-Expired: 1"]
--- no_error_log
[error]



=== TEST 25: deadline_from: "default" and "other" are the metrics' own sources
--- config
    location /x { deadline_from Default ms; }
--- must_die
--- error_log
"deadline_from" directive: the header name "default" is reserved (a metrics label)
