# ngx_http_breaker_module configuration: inheritance, the slow-call
# policy, and every configuration error, named with its directive and value.

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
$ENV{TEST_NGINX_SLOW_PORT} = free_port();

run_tests();

__DATA__

=== TEST 1: tuning inherits from http to server to location, and can be overridden
--- http_config
    breaker_zone breakers 1m;
    breaker_consecutive_failures 2;
    breaker_open 20s jitter=0%;
--- config
    location ~ ^/backend/502$ { return 502; }
    breaker orders zone=breakers;
    location /inherit {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /override {
        breaker_consecutive_failures 3;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /none {
        breaker off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- request eval
["GET /none", "GET /none", "GET /none", "GET /inherit", "GET /inherit",
 "GET /inherit", "GET /none"]
--- error_code eval
[502, 502, 502, 502, 502, 503, 502]
--- response_headers eval
["", "", "", "", "", "Retry-After: 20", ""]
--- no_error_log
[alert]



=== TEST 2: the slow-call rate trips when calls are strictly over the threshold
--- http_config
    breaker_zone breakers 1m;
--- config
    location /slow {
        breaker slowpoke zone=breakers;
        breaker_consecutive_failures off;
        breaker_failure_rate off;
        breaker_min_requests 2;
        breaker_slow_call 100ms 100%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW_PORT/;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 0.3, 6);
--- request eval
["GET /slow", "GET /slow", "GET /slow"]
--- error_code eval
[200, 200, 503]
--- timeout: 5
--- no_error_log
[alert]



=== TEST 3: breaker_zone: a bad size
--- http_config
    breaker_zone breakers lots;
--- config
--- must_die
--- error_log
"breaker_zone" directive: invalid size "lots"



=== TEST 4: breaker_zone: too small
--- http_config
    breaker_zone breakers 4k;
--- config
--- must_die
--- error_log
"breaker_zone" directive: zone "breakers" is too small



=== TEST 5: breaker_zone: declared twice
--- http_config
    breaker_zone breakers 1m;
    breaker_zone breakers 1m;
--- config
--- must_die
--- error_log
"breaker_zone" directive: zone "breakers" is already declared



=== TEST 6: breaker: an unknown zone
--- config
    location /x { breaker orders zone=nowhere; }
--- must_die
--- error_log
breaker "orders" uses zone "nowhere", which no "breaker_zone" declares



=== TEST 7: breaker: no zone
--- http_config
    breaker_zone breakers 1m;
--- config
    location /x { breaker orders; }
--- must_die
--- error_log
"breaker" directive: breaker "orders" needs zone=<name>



=== TEST 8: breaker: a bad name
--- http_config
    breaker_zone breakers 1m;
--- config
    location /x { breaker "or ders" zone=breakers; }
--- must_die
--- error_log
"breaker" directive: invalid breaker name "or ders"



=== TEST 9: breaker: an unknown parameter
--- http_config
    breaker_zone breakers 1m;
--- config
    location /x { breaker orders zone=breakers size=1; }
--- must_die
--- error_log
"breaker" directive: invalid parameter "size=1"



=== TEST 10: breaker: one name, two zones
--- http_config
    breaker_zone a 1m;
    breaker_zone b 1m;
--- config
    location /a { breaker orders zone=a; }
    location /b { breaker orders zone=b; }
--- must_die
--- error_log
"breaker" directive: breaker "orders" is already declared with another zone or key



=== TEST 11: breaker_window: a bad duration
--- config
    location /x { breaker_window 10x; }
--- must_die
--- error_log
"breaker_window" directive: invalid duration "10x"



=== TEST 12: breaker_window: too many buckets
--- config
    location /x { breaker_window 10s buckets=61; }
--- must_die
--- error_log
"breaker_window" directive: invalid number "61", expected 1 to 60



=== TEST 13: breaker_window: an unknown parameter
--- config
    location /x { breaker_window 10s slices=5; }
--- must_die
--- error_log
"breaker_window" directive: invalid parameter "slices=5"



=== TEST 14: breaker_min_requests: not a number
--- config
    location /x { breaker_min_requests many; }
--- must_die
--- error_log
"breaker_min_requests" directive: invalid number "many"



=== TEST 15: breaker_failure_rate: over 100%
--- config
    location /x { breaker_failure_rate 150%; }
--- must_die
--- error_log
"breaker_failure_rate" directive: invalid percentage "150%"



=== TEST 16: breaker_failure_rate: 0% would trip on every request
--- config
    location /x { breaker_failure_rate 0%; }
--- must_die
--- error_log
"breaker_failure_rate" directive: "0%" would trip on every request



=== TEST 17: breaker_consecutive_failures: zero (off is the word)
--- config
    location /x { breaker_consecutive_failures 0; }
--- must_die
--- error_log
"breaker_consecutive_failures" directive: invalid number "0", expected 1 to



=== TEST 18: breaker_slow_call: a bad rate
--- config
    location /x { breaker_slow_call 800ms 80; }
--- must_die
--- error_log
"breaker_slow_call" directive: invalid percentage "80"



=== TEST 19: breaker_slow_call: a lone duration
--- config
    location /x { breaker_slow_call 800ms; }
--- must_die
--- error_log
"breaker_slow_call" directive: expected a duration and a percentage, or "off", not "800ms"



=== TEST 20: breaker_open: max below the open time
--- config
    location /x { breaker_open 30s max=10s; }
--- must_die
--- error_log
"breaker_open" directive: "max=10s" is less than the open time "30s"



=== TEST 21: breaker_open: a bad jitter
--- config
    location /x { breaker_open 30s jitter=lots; }
--- must_die
--- error_log
"breaker_open" directive: invalid percentage "lots"



=== TEST 22: breaker_half_open: too many probes
--- config
    location /x { breaker_half_open 100; }
--- must_die
--- error_log
"breaker_half_open" directive: invalid number "100", expected 1 to 8



=== TEST 23: breaker_half_open: a zero lease
--- config
    location /x { breaker_half_open 3 timeout=0; }
--- must_die
--- error_log
"breaker_half_open" directive: "timeout=0" must be more than 0



=== TEST 24: breaker_max_concurrent: negative
--- config
    location /x { breaker_max_concurrent -1; }
--- must_die
--- error_log
"breaker_max_concurrent" directive: invalid number "-1"



=== TEST 25: breaker_failure: an unknown token
--- config
    location /x { breaker_failure error refused; }
--- must_die
--- error_log
"breaker_failure" directive: invalid status "refused"



=== TEST 26: breaker_failure: a bad range
--- config
    location /x { breaker_failure 599-500; }
--- must_die
--- error_log
"breaker_failure" directive: invalid status "599-500"



=== TEST 27: breaker_fallback: a success status
--- config
    location /x { breaker_fallback 200; }
--- must_die
--- error_log
"breaker_fallback" directive: invalid fallback "200", expected a status from 400 to 599 or a @named location



=== TEST 28: breaker_mode: unknown
--- config
    location /x { breaker_mode sometimes; }
--- must_die
--- error_log
"breaker_mode" directive: invalid mode "sometimes", expected enforce, dry_run, force_open, force_closed or off



=== TEST 29: a directive given twice in one place
--- config
    location /x { breaker_open 1s; breaker_open 2s; }
--- must_die
--- error_log
"breaker_open" directive is duplicate



=== TEST 30: breaker_qps_policy: a band without a rate
--- config
    location /x { breaker_qps_policy 0-100; }
--- must_die
--- error_log
"breaker_qps_policy" directive: invalid band "0-100", expected <low>-<high>:<percent>



=== TEST 31: breaker_qps_policy: a reversed band
--- config
    location /x { breaker_qps_policy 100-10:50%; }
--- must_die
--- error_log
"breaker_qps_policy" directive: invalid band "100-10:50%"



=== TEST 32: breaker_qps_policy: a bad rate
--- config
    location /x { breaker_qps_policy 0-100:lots; }
--- must_die
--- error_log
"breaker_qps_policy" directive: invalid percentage "lots"
