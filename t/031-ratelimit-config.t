# ngx_http_ratelimit_module configuration: every configuration error stops
# nginx with a line naming the directive and the bad value; valid forms: a
# zone declared after the location that uses it, every parameter at its
# bounds, and inheritance of ratelimit, ratelimit_status, ratelimit_dry_run
# and ratelimit_headers from http to server to location, where a level's own
# "ratelimit" replaces the inherited ones.
#
# The limited locations proxy to "location = /ok { return 200; }": return
# answers in the rewrite phase, before the preaccess phase where a limit
# applies, so /ok itself is never limited, whatever it inherits.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;

run_tests();

__DATA__

=== TEST 1: ratelimit_zone: no key=
--- http_config
    ratelimit_zone a size=1m rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a" must have "key="\E}



=== TEST 2: ratelimit_zone: no size=
--- http_config
    ratelimit_zone a key=$binary_remote_addr rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a" must have "size="\E}



=== TEST 3: ratelimit_zone: no rate=
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a" must have "rate="\E}



=== TEST 4: ratelimit_zone: a rate per an unknown unit
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=10r/x;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid rate "10r/x"\E}



=== TEST 5: ratelimit_zone: a zero rate
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=0r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid rate "0r/s"\E}



=== TEST 6: ratelimit_zone: a rate that is not one
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=abc;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid rate "abc"\E}



=== TEST 7: ratelimit_zone: a rate with more decimals than kept
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1.0001r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid rate "1.0001r/s"\E}



=== TEST 8: ratelimit_zone: a negative rate
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=-5r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid rate "-5r/s"\E}



=== TEST 9: ratelimit_zone: a bad size
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=lots rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid size "lots"\E}



=== TEST 10: ratelimit_zone: a size below 8 pages
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=16k rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a" size "16k" is too small, at least\E}



=== TEST 10b: ratelimit_zone: a size of 4 GiB or more (the LRU links are 32-bit offsets)
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=4096m rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a" size "4096m" is too large, at most 4095m\E}



=== TEST 11: ratelimit_zone: an unknown algorithm
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s algorithm=leaky_bucket;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid algorithm "leaky_bucket", expected "gcra" or "sliding_window"\E}



=== TEST 12: ratelimit_zone: an unknown sync
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s sync=both;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid sync "both", expected "local", "redis" or "strict"\E}



=== TEST 13: ratelimit_zone: an unknown on_redis_error
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s on_redis_error=ignore;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid on_redis_error "ignore", expected "local", "open" or "closed"\E}



=== TEST 14: ratelimit_zone: sync_interval below 10ms
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s sync_interval=9ms;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qsync_interval "9ms" in "ratelimit_zone" must be between 10ms and 60s\E}



=== TEST 15: ratelimit_zone: sync_interval above 60s
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s sync_interval=60001ms;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qsync_interval "60001ms" in "ratelimit_zone" must be between 10ms and 60s\E}



=== TEST 16: ratelimit_zone: a sync_interval that is not a time
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s sync_interval=soon;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid duration "soon"\E}



=== TEST 17: ratelimit_zone: an unknown parameter
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s burst=5;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid parameter "burst=5" in "ratelimit_zone"\E}



=== TEST 18: ratelimit_zone: a parameter without a value
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s nodelay;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid parameter "nodelay" in "ratelimit_zone"\E}



=== TEST 19: ratelimit_zone: the zone's name missing
--- http_config
    ratelimit_zone key=$binary_remote_addr size=1m rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: invalid zone name "key=\E\$\Qbinary_remote_addr", the name comes first\E}



=== TEST 20: ratelimit_zone: an empty key
--- http_config
    ratelimit_zone a key= size=1m rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid key "" in "ratelimit_zone"\E}



=== TEST 21: ratelimit_zone: declared twice
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
    ratelimit_zone a key=$binary_remote_addr size=1m rate=2r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qduplicate ratelimit_zone "a"\E}



=== TEST 22: ratelimit_zone: declared twice with another size (nginx's own message)
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
    ratelimit_zone a key=$binary_remote_addr size=2m rate=1r/s;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qthe size 2097152 of shared memory zone "a" conflicts with already declared size 1048576\E}



=== TEST 23: ratelimit_zone: only at http level
--- config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive is not allowed here\E}



=== TEST 24: ratelimit_zone: sync=redis without resilience_redis
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s sync=redis;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a": "sync=redis" needs "resilience_redis"\E}



=== TEST 25: ratelimit_zone: sync=strict without resilience_redis
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s sync=strict;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" "a": "sync=strict" needs "resilience_redis"\E}



=== TEST 26: ratelimit: a zone declared nowhere
--- config
    location /x { ratelimit nowhere; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" uses unknown ratelimit_zone "nowhere"\E}



=== TEST 27: ratelimit: a zone declared nowhere, while others are
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a; }
    location /y { ratelimit b; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" uses unknown ratelimit_zone "b"\E}



=== TEST 28: ratelimit: a zone that belongs to limit_req
--- http_config
    limit_req_zone $binary_remote_addr zone=lr:1m rate=1r/s;
--- config
    location /x { ratelimit lr; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qthe shared memory zone "lr" is already declared for a different use\E}



=== TEST 29: ratelimit: the same zone twice in one location
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x {
        ratelimit a;
        ratelimit a burst=5;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qduplicate "ratelimit" for zone "a"\E}



=== TEST 30: ratelimit: nodelay with delay=
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=5 nodelay delay=2; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" zone "a": "nodelay" and "delay=" exclude each other\E}



=== TEST 31: ratelimit: delay= with nodelay, the other way round
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=5 delay=2 nodelay; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" zone "a": "nodelay" and "delay=" exclude each other\E}



=== TEST 32: ratelimit: a negative burst=
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=-1; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" directive: invalid number "-1", expected 0 to 10000000\E}



=== TEST 33: ratelimit: a burst= too large
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=10000001; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" directive: invalid number "10000001", expected 0 to 10000000\E}



=== TEST 34: ratelimit: an empty burst=
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" directive: invalid number "", expected 0 to 10000000\E}



=== TEST 35: ratelimit: a delay= that is not a number
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=5 delay=two; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" directive: invalid number "two", expected 0 to 10000000\E}



=== TEST 36: ratelimit: a fractional delay=
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a burst=5 delay=1.5; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit" directive: invalid number "1.5", expected 0 to 10000000\E}



=== TEST 37: ratelimit: an unknown parameter
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a rate=2r/s; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid parameter "rate=2r/s" in "ratelimit"\E}



=== TEST 38: ratelimit: an unknown word
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a fast; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid parameter "fast" in "ratelimit"\E}



=== TEST 39: ratelimit: an empty cost=
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit a cost=; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid cost "" in "ratelimit"\E}



=== TEST 40: ratelimit: no zone
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x { ratelimit; }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid number of arguments in "ratelimit" directive\E}



=== TEST 41: ratelimit_status: below 400
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x {
        ratelimit a;
        ratelimit_status 399;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_status" directive: invalid number "399", expected 400 to 599\E}



=== TEST 42: ratelimit_status: above 599, at http level
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
    ratelimit_status 600;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_status" directive: invalid number "600", expected 400 to 599\E}



=== TEST 43: ratelimit_status: not a number
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    ratelimit_status busy;
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_status" directive: invalid number "busy", expected 400 to 599\E}



=== TEST 44: ratelimit_headers: an unknown mode
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x {
        ratelimit a;
        ratelimit_headers ietf;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_headers" directive: invalid value "ietf", expected "off", "draft" or "legacy"\E}



=== TEST 45: ratelimit_log_level: a level it does not take
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    location /x {
        ratelimit a;
        ratelimit_log_level debug;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_log_level" directive: invalid value "debug", expected "info", "notice", "warn" or "error"\E}



=== TEST 46: ratelimit_dry_run: neither on nor off
--- http_config
    ratelimit_zone a key=$binary_remote_addr size=1m rate=1r/s;
--- config
    ratelimit_dry_run maybe;
--- must_die
--- error_log eval
qr{\[emerg\] .*\Qinvalid value "maybe" in "ratelimit_dry_run" directive, it must be "on" or "off"\E}



=== TEST 47: a zone declared after the server and location that use it
--- http_config
    server {
        listen $TEST_NGINX_SERVER_PORT;
        server_name later.test;
        location = /ok { return 200 "ok\n"; }
        location /later {
            ratelimit later;
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
        }
    }
    ratelimit_zone later key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
--- request eval
["GET /later?k=a", "GET /later?k=a", "GET /later?k=b"]
--- more_headers
Host: later.test
--- error_code eval
[200, 429, 200]
--- response_headers eval
["Retry-After: ", "Retry-After: 60", "Retry-After: "]



=== TEST 48: every zone parameter at its bounds is taken
--- http_config
    ratelimit_zone low key=$arg_k size=32k rate=0.001r/s algorithm=gcra
                   sync=local sync_interval=10ms on_redis_error=open;
    ratelimit_zone high key=$arg_k$arg_x size=1m rate=4294967296r/d
                   algorithm=sliding_window sync_interval=60s
                   on_redis_error=closed;
--- config
    location = /ok { return 200 "ok\n"; }
    location /low {
        ratelimit low burst=0 delay=0 cost=1;
        ratelimit_status 400;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /high {
        ratelimit high burst=10000000 nodelay;
        ratelimit_status 599;
        ratelimit_headers draft;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /low?k=a", "GET /low?k=a", "GET /high?k=a"]
--- error_code eval
[200, 400, 200]
--- response_headers eval
["Retry-After: ", "Retry-After: 1000",
 "RateLimit-Policy: \"high\";q=4304967296;w=86400"]



=== TEST 49: sync=redis and sync=strict start with resilience_redis
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ratelimit_zone fleet key=$arg_k size=1m rate=1r/m sync=redis;
    ratelimit_zone strict key=$arg_k size=1m rate=1r/m sync=strict;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit fleet;
        ratelimit strict;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
# a key of its own: Redis may remember the last run's for a minute
"GET /t?k=" . int(rand(1e9))
--- error_code: 200
--- response_body
ok
--- no_error_log
[emerg]
[alert]
[crit]



=== TEST 50: ratelimit, ratelimit_status and ratelimit_headers at http level reach a location through its server
--- http_config
    ratelimit_zone h key=$arg_k size=1m rate=1r/m;
    ratelimit h;
    ratelimit_status 503;
    ratelimit_headers legacy;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?k=a", "GET /t?k=a", "GET /t?k=b"]
--- error_code eval
[200, 503, 200]
--- response_headers eval
["X-RateLimit-Limit: 1\nX-RateLimit-Remaining: 0\nRetry-After: ",
 "X-RateLimit-Limit: 1\nX-RateLimit-Remaining: 0\nRetry-After: 60",
 "X-RateLimit-Limit: 1\nX-RateLimit-Remaining: 0\nRetry-After: "]



=== TEST 51: ratelimit_dry_run at http level reaches a location through its server; a location turns it off
--- http_config
    ratelimit_zone d key=$arg_k size=1m rate=1r/m;
    ratelimit d;
    ratelimit_dry_run on;
--- config
    location = /ok { return 200 "ok\n"; }
    add_header X-S $ratelimit_status always;
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /enforced {
        ratelimit_dry_run off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?k=a", "GET /t?k=a", "GET /enforced?k=b", "GET /enforced?k=b"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers eval
["X-S: PASSED", "X-S: REJECTED_DRY_RUN", "X-S: PASSED", "X-S: REJECTED"]



=== TEST 52: a server's ratelimit, status, headers and dry run replace http's and reach its locations
--- http_config
    ratelimit_zone h key=$arg_h size=1m rate=1r/m;
    ratelimit_zone s key=$arg_s size=1m rate=1r/m;
    ratelimit h;
    ratelimit_status 503;
    ratelimit_headers legacy;
    ratelimit_dry_run on;
--- config
    ratelimit s;
    ratelimit_status 507;
    ratelimit_headers draft;
    ratelimit_dry_run off;
    location = /ok { return 200 "ok\n"; }
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?h=a&s=1", "GET /t?h=a&s=2", "GET /t?h=b&s=1"]
--- error_code eval
[200, 200, 507]
--- response_headers eval
["RateLimit-Policy: \"s\";q=1;w=60\nRateLimit: \"s\";r=0;t=60\nX-RateLimit-Limit: ",
 "RateLimit: \"s\";r=0;t=60\nX-RateLimit-Limit: ",
 "RateLimit: \"s\";r=0;t=60\nRetry-After: 60\nX-RateLimit-Limit: "]



=== TEST 53: a location's own ratelimit replaces every inherited one, and its own settings win
--- http_config
    ratelimit_zone s1 key=$arg_s size=1m rate=1r/m;
    ratelimit_zone s2 key=$arg_s size=1m rate=1r/m;
    ratelimit_zone l key=$arg_l size=1m rate=1r/m;
--- config
    ratelimit s1;
    ratelimit s2;
    ratelimit_status 503;
    ratelimit_headers legacy;
    location = /ok { return 200 "ok\n"; }
    location /own {
        ratelimit l;
        ratelimit_status 429;
        ratelimit_headers off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /inherits {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /own?s=x&l=1", "GET /own?s=x&l=2", "GET /own?s=x&l=1",
 "GET /inherits?s=x", "GET /inherits?s=x"]
--- error_code eval
[200, 200, 429, 200, 503]
--- response_headers eval
["X-RateLimit-Limit: ", "X-RateLimit-Limit: ",
 "X-RateLimit-Limit: \nRetry-After: 60",
 "X-RateLimit-Limit: 1\nRetry-After: ", "X-RateLimit-Remaining: 0\nRetry-After: 60"]



=== TEST 54: a location may limit by the zone its server limits by, with its own burst
--- http_config
    ratelimit_zone s key=$arg_k size=1m rate=1r/m;
--- config
    ratelimit s;
    location = /ok { return 200 "ok\n"; }
    location /burst {
        ratelimit s burst=2 nodelay;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /plain {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /plain?k=a", "GET /plain?k=a", "GET /burst?k=b", "GET /burst?k=b",
 "GET /burst?k=b", "GET /burst?k=b"]
--- error_code eval
[200, 429, 200, 200, 200, 429]



=== TEST 55: ratelimit_zone: a zone name longer than 64 bytes (part of its Redis keys)
--- http_config eval
"ratelimit_zone " . ("z" x 65) . " key=\$binary_remote_addr size=1m rate=1r/s;"
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*\Q"ratelimit_zone" directive: zone name "\E z{65} \Q" is longer than 64 bytes\E}x
