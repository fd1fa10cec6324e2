# ngx_http_deadline_module: deadline_min auto.  A location keeps its
# upstream's recent answer times (to the response header) in the zone; a
# request with less left than their median is answered at once instead of
# loading a slow upstream; once the slow answers are older than the window
# the location lets requests through again.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(path_delay_server);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_PACED_PORT} = free_port();

run_tests();

__DATA__

=== TEST 1: shed below the upstream's median answer time, admitted again once the slow answers are older than the window
--- config
    location /t/ {
        deadline_from x-ms ms;
        deadline_min auto window=2s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_PACED_PORT;
        add_header X-Time $request_time always;
    }
    location = /pause {
        proxy_pass http://127.0.0.1:$TEST_NGINX_PACED_PORT;
    }
--- init
NR::Net::path_delay_server($ENV{TEST_NGINX_PACED_PORT}, 20,
                           { slow => 0.6, pause => 2.5 });
--- request eval
["GET /t/slow", "GET /t/slow", "GET /t/slow", "GET /t/fast",
 "GET /pause", "GET /t/fast", "GET /t/fast"]
--- more_headers eval
["x-ms: 5000", "x-ms: 5000", "x-ms: 5000", "x-ms: 300", "",
 "x-ms: 300", "x-ms: 300"]
--- error_code eval
[200, 200, 200, 504, 200, 200, 200]
--- response_headers_like eval
["X-Time: .*", "X-Time: .*", "X-Time: .*", "X-Time: 0\\.0\\d*", "X-Time: .*",
 "X-Time: .*", "X-Time: .*"]
--- timeout: 6
--- no_error_log
[error]
[alert]



=== TEST 2: a time still works, and turns auto off below
--- config
    deadline_min auto;
    location /t/ {
        deadline 5s;
        deadline_min 10ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_PACED_PORT;
    }
--- request
GET /t/fast
--- response_body
/t/fast
--- no_error_log
[error]



=== TEST 3: deadline_min: a window for a time
--- config
    location /x { deadline_min 5ms window=2s; }
--- must_die
--- error_log
"deadline_min" directive: "window=2s" is for "auto"



=== TEST 4: deadline_min auto: a bad window
--- config
    location /x { deadline_min auto window=0; }
--- must_die
--- error_log
"deadline_min" directive: "window=0" must be more than 0 and at most 1h



=== TEST 5: deadline_min auto: an unknown parameter
--- config
    location /x { deadline_min auto span=2s; }
--- must_die
--- error_log
"deadline_min" directive: invalid parameter "span=2s"
