# ngx_http_deadline_module: where the deadline is enforced and for how
# long.  Only locations answered by an upstream module are enforced (a
# resilience_status location under a spent budget answers as usual); the
# budget holds from arrival until the upstream answers: a body that comes
# too late (buffered, or with proxy_request_buffering off) or a connect
# that hangs is answered at the deadline, and the upstream, which logs
# when each request reaches it, never sees a request after its deadline;
# the propagated value is the time left once the body was read.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(arrival_server blackhole_server);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;

for my $i (1 .. 5) {
    $ENV{"TEST_NGINX_ARRIVE${i}_PORT"} = free_port();
    $ENV{"TEST_NGINX_ARRIVALS$i"} = "/tmp/nr-arrivals-$$-$i.log";
}

$ENV{TEST_NGINX_HOLE_PORT} = free_port();

$ENV{TEST_NGINX_ARRIVALS_LOCATION} = join "\n", map { <<"_EOC_" } 1 .. 5;
    location = /arrivals$_ {
        default_type text/plain;
        alias $ENV{"TEST_NGINX_ARRIVALS$_"};
    }
_EOC_

END { unlink glob "/tmp/nr-arrivals-$$-*.log" }

run_tests();

__DATA__

=== TEST 1: a resilience_status location under a spent budget answers as usual
--- config
    deadline_from x-ms ms;
    location = /status {
        resilience_status prometheus;
    }
--- request
GET /status
--- more_headers
x-ms: 0
--- error_code: 200
--- response_body_like
nginx_resilience_deadline_failed_fast_total 0
--- no_error_log
[error]
[alert]



=== TEST 2: a body later than the budget: 504 at the deadline, and the upstream never contacted
--- config
    $TEST_NGINX_ARRIVALS_LOCATION
    location = /t {
        deadline 1s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ARRIVE1_PORT;
        add_header X-Time $request_time always;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE1_PORT}, $ENV{TEST_NGINX_ARRIVALS1}, 8, 0);
--- request eval
[["POST /t\n", { value => "hello", delay_before => 1.5 }], "GET /arrivals1"]
--- error_code eval
[504, 200]
--- response_headers_like eval
["X-Time: 1\\.\\d+", "Content-Length: 0"]
--- no_error_log
[error]
[alert]



=== TEST 3: proxy_request_buffering off, a body trickled past the budget: 504 at the deadline; the upstream saw the request before it
--- config
    $TEST_NGINX_ARRIVALS_LOCATION
    location = /t {
        deadline 1s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ARRIVE2_PORT;
        proxy_request_buffering off;
        proxy_http_version 1.1;
        add_header X-Time $request_time always;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE2_PORT}, $ENV{TEST_NGINX_ARRIVALS2}, 8, 0);
--- request eval
[["POST /t\n", { value => "he", delay_before => 1.2 },
  { value => "llo", delay_before => 1.2 }], "GET /arrivals2"]
--- error_code eval
[504, 200]
--- response_headers_like eval
["X-Time: 1\\.\\d+", "Content-Type: text/plain"]
--- response_body_like eval
[qr/504 Gateway/, qr/\A\d+ POST \/t HTTP\/1\.1\n\z/]
--- no_error_log
[alert]



=== TEST 4: for gRPC, a body later than the budget gets the gRPC answer at the deadline
--- config
    $TEST_NGINX_ARRIVALS_LOCATION
    location = /t {
        deadline 1s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ARRIVE3_PORT;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE3_PORT}, $ENV{TEST_NGINX_ARRIVALS3}, 8, 0);
--- request eval
[["POST /t\n", { value => "hello", delay_before => 1.5 }], "GET /arrivals3"]
--- more_headers eval
["Content-Type: application/grpc", ""]
--- error_code eval
[200, 200]
--- response_headers eval
["grpc-status: 4\ngrpc-message: deadline exceeded before the upstream",
 "Content-Length: 0"]
--- no_error_log
[error]
[alert]



=== TEST 5: the propagated value is what is left once the body was read (1500 ms, the body 600 ms late: about 900)
The arrival is stamped when nginx reads the request head, which a busy
machine (or valgrind) delays more than the body: up to 950 is allowed.
--- config
    location = /t {
        deadline_from x-request-timeout ms;
        deadline_propagate x-request-timeout ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo {
        return 200 "$http_x_request_timeout\n";
    }
--- request eval
[["POST /t\n", { value => "hello", delay_before => 0.6 }]]
--- more_headers
X-Request-Timeout: 1500
--- response_body_like eval
[qr/\A([3-8]\d\d|9[0-4]\d|950)\n\z/]
--- no_error_log
[error]



=== TEST 6: 300 ms from the header, the body at 800 ms: 504, and the upstream never contacted
--- config
    $TEST_NGINX_ARRIVALS_LOCATION
    location = /t {
        deadline_from x-request-timeout ms;
        deadline_propagate x-request-timeout ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ARRIVE4_PORT;
        add_header X-Time $request_time always;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE4_PORT}, $ENV{TEST_NGINX_ARRIVALS4}, 8, 0);
--- request eval
[["POST /t\n", { value => "hello", delay_before => 0.8 }], "GET /arrivals4"]
--- more_headers eval
["X-Request-Timeout: 300", ""]
--- error_code eval
[504, 200]
--- response_headers_like eval
["X-Time: 0\\.[3-7]\\d*", "Content-Length: 0"]
--- no_error_log
[error]
[alert]



=== TEST 7: a connect that hangs ends at the deadline, not at proxy_connect_timeout
--- config
    location = /t {
        deadline 1s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_HOLE_PORT;
        proxy_connect_timeout 30s;
        add_header X-Time $request_time always;
    }
--- init
NR::Net::blackhole_server($ENV{TEST_NGINX_HOLE_PORT}, 8);
--- request
GET /t
--- error_code: 504
--- response_headers_like
X-Time: 1\.\d+
--- timeout: 5
--- error_log
upstream timed out
--- no_error_log
[alert]



=== TEST 8: a body within the budget: the upstream gets the request, once, in time
--- config
    $TEST_NGINX_ARRIVALS_LOCATION
    location = /t {
        deadline 2s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ARRIVE5_PORT;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE5_PORT}, $ENV{TEST_NGINX_ARRIVALS5}, 8, 0);
--- request eval
[["POST /t\n", { value => "hello", delay_before => 0.5 }], "GET /arrivals5"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/\Aok\n\z/, qr/\A\d+ POST \/t HTTP\/1\.0\n\z/]
--- no_error_log
[error]
[alert]



=== TEST 9: every upstream module's location is enforced (a spent budget: 504, no connect to the closed port, which would be a 502)
--- config
    deadline_from x-ms ms;
    location /proxy { proxy_pass http://127.0.0.1:$TEST_NGINX_HOLE_PORT; }
    location /proxyvar {
        set $to 127.0.0.1:$TEST_NGINX_HOLE_PORT;
        proxy_pass http://$to;
    }
    location /grpc { grpc_pass grpc://127.0.0.1:$TEST_NGINX_HOLE_PORT; }
    location /fastcgi { fastcgi_pass 127.0.0.1:$TEST_NGINX_HOLE_PORT; }
    location /uwsgi { uwsgi_pass 127.0.0.1:$TEST_NGINX_HOLE_PORT; }
    location /scgi { scgi_pass 127.0.0.1:$TEST_NGINX_HOLE_PORT; }
    location /memcached {
        set $memcached_key $uri;
        memcached_pass 127.0.0.1:$TEST_NGINX_HOLE_PORT;
        location /memcached/static { }
    }
--- request eval
["GET /proxy", "GET /proxyvar", "GET /grpc", "GET /fastcgi", "GET /uwsgi",
 "GET /scgi", "GET /memcached", "GET /memcached/static"]
--- more_headers
x-ms: 0
--- error_code eval
[504, 504, 504, 504, 504, 504, 504, 404]
--- no_error_log
[alert]
