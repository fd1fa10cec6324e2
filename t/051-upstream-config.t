# ngx_http_upstream_discovery_module configuration errors, each naming its
# directive and value.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

run_tests();

__DATA__

=== TEST 1: keepalive before health_check
--- http_config
    upstream app {
        keepalive 8;
        health_check;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" directive cannot follow a balancing method ("hash", "ip_hash", "least_conn", "random") nor "keepalive"



=== TEST 2: a balancing method before discovery
--- http_config
    upstream app {
        hash $uri;
        discovery file=/tmp/x.json;
    }
--- config
--- must_die
--- error_log
"discovery" directive cannot follow a balancing method ("hash", "ip_hash", "least_conn", "random") nor "keepalive"



=== TEST 3: an unknown health_check parameter
--- http_config
    upstream app {
        health_check intervall=2s;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
invalid parameter "intervall=2s" in "health_check"



=== TEST 4: a bad interval
--- http_config
    upstream app {
        health_check interval=soon;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" directive: invalid duration "soon"



=== TEST 5: a bad type
--- http_config
    upstream app {
        health_check type=udp;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" directive: invalid type "udp", expected "http", "tcp" or "https"



=== TEST 6: fails out of range
--- http_config
    upstream app {
        health_check fails=0;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" directive: invalid number "0", expected 1 to 100



=== TEST 7: an unknown match
--- http_config
    upstream app {
        health_check match=nope;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
upstream "app": "health_check" uses unknown health_check_match "nope"



=== TEST 8: a bad line in a match
--- http_config
    health_check_match ok {
        status 200;
        colour blue;
    }
--- config
--- must_die
--- error_log
invalid line "colour" in health_check_match "ok"



=== TEST 9: a bad regex in a match
--- http_config
    health_check_match ok {
        body ~ "(unclosed";
    }
--- config
--- must_die
--- error_log
health_check_match: invalid regex "(unclosed"



=== TEST 10: a bad status in a match
--- http_config
    health_check_match ok {
        status 2000;
    }
--- config
--- must_die
--- error_log
invalid status "2000"



=== TEST 11: discovery without a source
--- http_config
    upstream app {
        discovery interval=1s;
    }
--- config
--- must_die
--- error_log
"discovery" needs a source: "file=", "consul=", "redis=" or "dns="



=== TEST 12: a Consul URL that is not http://host[:port]/path
--- http_config
    upstream app {
        discovery consul=https://127.0.0.1:8500/v1/health/service/app;
        server 127.0.0.1:1 down;
    }
--- config
--- must_die
--- error_log
invalid parameter "consul=https://127.0.0.1:8500/v1/health/service/app" in "discovery"



=== TEST 13: health_check twice
--- http_config
    upstream app {
        health_check;
        health_check;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" directive is duplicate



=== TEST 14: a bad panic share
--- http_config
    upstream app {
        health_check;
        health_check_panic lots;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check_panic" directive: invalid percentage "lots"



=== TEST 15: jitter as long as the interval
--- http_config
    upstream app {
        health_check interval=1s jitter=1s;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" jitter must be shorter than the interval



=== TEST 16: a duplicate match
--- http_config
    health_check_match ok { status 200; }
    health_check_match ok { status 204; }
--- config
--- must_die
--- error_log
duplicate health_check_match "ok"



=== TEST 17: redis= without resilience_redis
--- http_config
    upstream app {
        discovery redis=peers:app;
        server 127.0.0.1:1 down;
    }
--- config
--- must_die
--- error_log
upstream "app": "discovery redis=" needs "resilience_redis"



=== TEST 18: dns= without a resolver
--- http_config
    upstream app {
        discovery dns=api.test:8080;
        server 127.0.0.1:1 down;
    }
--- config
--- must_die
--- error_log
upstream "app": "discovery dns=" needs a "resolver" at http level



=== TEST 19: dns= without a port or a service
--- http_config
    resolver 127.0.0.1:53;
    upstream app {
        discovery dns=api.test;
        server 127.0.0.1:1 down;
    }
--- config
--- must_die
--- error_log
"discovery" "dns=api.test" needs a port, as in "dns=api.internal:8080", or "service=" for SRV records



=== TEST 20: service= without dns=
--- http_config
    upstream app {
        discovery file=/tmp/x.json service=http;
        server 127.0.0.1:1 down;
    }
--- config
--- must_die
--- error_log
"discovery" "service=" goes with "dns="



=== TEST 21: a balancing mode it does not have
--- http_config
    upstream app {
        health_check_balance ip_hash;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check_balance" directive: invalid value "ip_hash", expected "round_robin" or "least_conn"



=== TEST 22: 256 health-checked upstreams fit in the module's zone
--- http_config eval
join "", map { "upstream u$_ { health_check interval=60s; server 127.0.0.1:1; }\n" } 1 .. 256;
--- config
    location = /t { return 200 "started\n"; }
--- request
GET /t
--- response_body
started
--- no_error_log
[emerg]
[alert]



=== TEST 23: a 257th is refused, with the reason
--- http_config eval
join "", map { "upstream u$_ { health_check interval=60s; server 127.0.0.1:1; }\n" } 1 .. 257;
--- config
--- must_die
--- error_log
upstream discovery: more than 256 upstreams



=== TEST 24: health_check_slow_start: not a time
--- http_config
    upstream app {
        health_check_slow_start soon;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check_slow_start" directive: invalid duration "soon", expected a time such as 500ms, 3s, 1m or 1h



=== TEST 25: health_check_slow_start: more than an hour
--- http_config
    upstream app {
        health_check_slow_start 2h;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check_slow_start" directive: "2h" must be more than 0 and at most 1h (or "off")
