# The deadline and the breaker meet through the core: a timeout caused by
# the request's deadline is the "deadline" outcome, not an upstream
# failure, unless breaker_failure lists it.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(slow_server);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{"TEST_NGINX_SLOW${_}_PORT"} = free_port() for 1 .. 3;

run_tests();

__DATA__

=== TEST 1: a deadline cut does not count against the upstream
--- http_config
    breaker_zone breakers 1m;
--- config
    location /t {
        deadline 300ms;
        breaker slowpoke zone=breakers;
        breaker_consecutive_failures 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW1_PORT/;
        proxy_read_timeout 10s;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW1_PORT}, 3, 6);
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[504, 504]
--- timeout: 2
--- no_error_log
opened



=== TEST 2: unless breaker_failure lists "deadline"
--- http_config
    breaker_zone breakers 1m;
--- config
    location /t {
        deadline 300ms;
        breaker slowpoke zone=breakers;
        breaker_consecutive_failures 1;
        breaker_failure error timeout deadline 502-504;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW2_PORT/;
        proxy_read_timeout 10s;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW2_PORT}, 3, 6);
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[504, 503]
--- timeout: 2
--- no_error_log
[alert]



=== TEST 3: an upstream timeout with budget to spare is still a failure
--- http_config
    breaker_zone breakers 1m;
--- config
    location /t {
        deadline 10s;
        breaker slowpoke zone=breakers;
        breaker_consecutive_failures 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW3_PORT/;
        proxy_read_timeout 300ms;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW3_PORT}, 3, 6);
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[504, 503]
--- timeout: 2
--- no_error_log
[alert]
