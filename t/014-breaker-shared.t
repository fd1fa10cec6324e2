# breaker_shared: two nginx instances and one Redis.  A trip on one
# reaches the other within 200 ms; an instance that restarts while a
# breaker is open comes back open; without Redis, breakers work locally.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port redis_cli redis_start redis_kill);
use NR::Net qw(http_get slow_server hold_request);
use NR::Nginx qw(nginx_start nginx_stop);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_PEER_PORT} = free_port();
$ENV{TEST_NGINX_DOWN_PORT} = free_port();
$ENV{TEST_NGINX_SLOW_PORT} = free_port();
$ENV{TEST_NGINX_FLAKY_REDIS_PORT} = free_port();

# a fresh key prefix for this run, so that no earlier run's state counts
our $Prefix = "nr:t014:$$:";
$ENV{TEST_NGINX_PREFIX} = $Prefix;

# the second instance: the same breakers, over an upstream that fails
our $PeerHttp = <<"_EOC_";
    resilience_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} prefix=$Prefix
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
_EOC_

our $PeerConfig = <<"_EOC_";
    location ~ ^/backend/502\$ { return 502; }
    location ~ ^/backend/200\$ { return 200 "ok\\n"; }
    location /adm {
        breaker adminbrk zone=breakers;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_PEER_PORT}/backend/200;
    }
    location /fp {
        breaker fleetprobe zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 1 timeout=5s;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_PEER_PORT}/backend/\$arg_s;
    }
    location /api {
        breaker orders zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 2;
        breaker_open 30s jitter=0%;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_PEER_PORT}/backend/502;
    }
    location /tenant {
        breaker tenants zone=breakers key=\$arg_t;
        breaker_shared on;
        breaker_consecutive_failures 2;
        breaker_open 30s jitter=0%;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_PEER_PORT}/backend/502;
    }
    location /rate {
        breaker rate zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures off;
        breaker_min_requests 4;
        breaker_failure_rate 50%;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_PEER_PORT}/backend/502;
    }
_EOC_

# waits until $n workers listen on the breaker channel
sub wait_subscribers {
    my ($n, $port) = @_;

    $port ||= $ENV{TEST_NGINX_REDIS_PORT};

    for (1 .. 200) {
        my $out = redis_cli($port, "PUBSUB", "NUMSUB", "${Prefix}breaker");
        my ($count) = $out =~ /^(\d+)\s*\z/m;
        return if defined $count && $count >= $n;
        select(undef, undef, undef, 0.05);
    }

    die "fewer than $n subscribers on ${Prefix}breaker";
}

# waits until $n clients (and this redis-cli) are connected to Redis
sub wait_clients {
    my ($n, $port) = @_;

    for (1 .. 200) {
        my @lines = grep { /^id=/ } split /\n/,
                    redis_cli($port, "CLIENT", "LIST");
        return if @lines >= $n + 1;
        select(undef, undef, undef, 0.05);
    }

    die "fewer than $n clients on port $port";
}

run_tests();

__DATA__

=== TEST 1: a trip on the other instance rejects here within 200 ms
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /api {
        breaker orders zone=breakers;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
        add_header X-Breaker $breaker_state always;
    }
    location /status { resilience_status; }
--- init
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $::PeerHttp, config => $::PeerConfig);
::wait_subscribers(3);
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/api") for 1 .. 2;
select(undef, undef, undef, 0.2);
--- request eval
["GET /api", "GET /status"]
--- error_code eval
[503, 200]
--- response_headers eval
["X-Breaker: open", ""]
--- response_body_like eval
[qr/503/, qr/breaker_sync_received_total\{zone="breakers"\} [1-9]/]
--- no_error_log
[alert]
[crit]



=== TEST 2: the notice is logged, with where it came from
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location /tenant {
        breaker tenants zone=breakers key=$arg_t;
        breaker_shared on;
        return 200 "ok\n";
    }
--- init
::wait_subscribers(3);
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/tenant?t=acme") for 1 .. 2;
select(undef, undef, undef, 0.2);
--- request
GET /tenant?t=acme
--- response_body
ok
--- error_log eval
qr/\[warn\] .*breaker "tenants" key "acme" opened for \d+ ms by another instance, through Redis/
--- no_error_log
[alert]



=== TEST 3: a keyed trip rejects that key only
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /tenant {
        breaker tenants zone=breakers key=$arg_t;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
--- init
::wait_subscribers(3);
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/tenant?t=globex") for 1 .. 2;
select(undef, undef, undef, 0.2);
--- request eval
["GET /tenant?t=globex", "GET /tenant?t=initech"]
--- error_code eval
[503, 200]
--- no_error_log
[alert]



=== TEST 4: an instance started while a breaker is open comes back open
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /api {
        breaker orders zone=breakers;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
--- init
NR::Nginx::nginx_stop($ENV{TEST_NGINX_PEER_PORT});
select(undef, undef, undef, 0.5);
--- request
GET /api
--- error_code: 503
--- error_log eval
qr/\[warn\] .*breaker "orders" opened for \d+ ms as the fleet left it, read from Redis/
--- no_error_log
[alert]



=== TEST 5: Redis down: the breaker works locally, and counts what it could not share
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_DOWN_PORT connect_timeout=100ms;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/502$ { return 502; }
    location /api {
        breaker alone zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /status { resilience_status; }
--- request eval
["GET /api", "GET /api", "GET /api", "GET /status"]
--- error_code eval
[502, 502, 503, 200]
--- response_body_like eval
[qr//, qr//, qr//, qr/breaker_sync_errors_total\{zone="breakers"\} 1\n/]
--- no_error_log
[alert]
[crit]



=== TEST 6: the failure rate is the fleet's: failures elsewhere count here
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/502$ { return 502; }
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /rate {
        breaker rate zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures off;
        breaker_min_requests 4;
        breaker_failure_rate 50%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- init
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $::PeerHttp, config => $::PeerConfig);
::wait_subscribers(3);
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/rate") for 1 .. 2;
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/rate?s=502");
select(undef, undef, undef, 0.6);
--- request eval
["GET /rate?s=200", "GET /rate?s=200"]
--- error_code eval
[200, 503]
--- no_error_log
[alert]
[crit]



=== TEST 7: alone, the same traffic here would not trip (min_requests)
--- http_config
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/502$ { return 502; }
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /rate {
        breaker rate zone=breakers;
        breaker_consecutive_failures off;
        breaker_min_requests 4;
        breaker_failure_rate 50%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/rate?s=502");
--- request eval
["GET /rate?s=200", "GET /rate?s=200"]
--- error_code eval
[200, 200]
--- no_error_log
[alert]



=== TEST 8: half-open, the probe budget is the fleet's, and a close reaches every instance
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /fp {
        breaker fleetprobe zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 1 timeout=5s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location /fpslow {
        breaker fleetprobe zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 1 timeout=5s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW_PORT/;
    }
    location /peer {
        proxy_pass http://127.0.0.1:$TEST_NGINX_PEER_PORT/fp?s=200;
    }
    location /sleep {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW_PORT/;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 1.5, 12);
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $::PeerHttp, config => $::PeerConfig);
::wait_subscribers(3);
# the peer trips, and so this instance opens; both are half-open after 1 s
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/fp?s=502");
select(undef, undef, undef, 1.2);
# here: the first request asks the fleet for a token and is turned away;
# the next one, a slow probe, takes the only token
my ($st) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/fp");
die "expected 503 while the token is asked for, got $st" if $st != 503;
select(undef, undef, undef, 0.2);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/fpslow", 4);
select(undef, undef, undef, 0.3);
--- request eval
["GET /peer", "GET /peer", "GET /sleep", "GET /peer"]
--- error_code eval
[503, 503, 200, 200]
--- timeout: 6
--- no_error_log
[alert]
[crit]



=== TEST 9: a resilience_admin change of a shared breaker reaches the fleet
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /adm {
        breaker adminbrk zone=breakers;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location /peeradm {
        proxy_pass http://127.0.0.1:$TEST_NGINX_PEER_PORT/adm;
    }
    location /admin/ {
        resilience_admin;
    }
--- init
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $::PeerHttp, config => $::PeerConfig);
::wait_subscribers(3);
my ($st) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/peeradm");
die "expected 200 before the change, got $st" if $st != 200;
($st) = NR::Net::http_put($ENV{TEST_NGINX_SERVER_PORT},
                          "/admin/breakers/adminbrk",
                          '{"mode": "force_open"}');
die "the PUT answered $st" if $st != 200;
select(undef, undef, undef, 0.2);
--- request eval
["GET /peeradm", "GET /adm"]
--- error_code eval
[503, 503]
--- no_error_log
[alert]
[crit]



=== TEST 10: Redis killed mid-run: trips stay local; when it is back, sharing resumes
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_FLAKY_REDIS_PORT
                     prefix=$TEST_NGINX_PREFIX connect_timeout=200ms;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /api {
        breaker orders zone=breakers;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location /tenant {
        breaker tenants zone=breakers key=$arg_t;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
--- init
my $port = $ENV{TEST_NGINX_FLAKY_REDIS_PORT};
NR::Redis::redis_start($port);
(my $http = $::PeerHttp) =~ s/127\.0\.0\.1:\d+ prefix/127.0.0.1:$port prefix/;
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $http, config => $::PeerConfig);
::wait_subscribers(3, $port);
NR::Redis::redis_kill($port);
select(undef, undef, undef, 0.3);
# Redis is down: the peer opens its own breaker, nobody else hears of it
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/tenant?t=down") for 1 .. 2;
my ($st) = NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/tenant?t=down");
die "the peer should reject locally, got $st" if $st != 503;
# Redis is back: every worker reconnects (both connections of the three
# workers) and subscribes again
NR::Redis::redis_start($port);
::wait_subscribers(3, $port);
::wait_clients(6, $port);
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/tenant?t=up") for 1 .. 2;
select(undef, undef, undef, 0.2);
--- request eval
["GET /tenant?t=down", "GET /tenant?t=up"]
--- error_code eval
[200, 503]
--- timeout: 10
--- no_error_log
[alert]
[crit]



=== TEST 11: (the peer opens a key while this instance is not running)
--- http_config
    breaker_zone breakers 1m;
--- config
    location /x { return 200 "ok\n"; }
--- init
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $::PeerHttp, config => $::PeerConfig);
NR::Net::http_get($ENV{TEST_NGINX_PEER_PORT}, "/tenant?t=restoreme")
    for 1 .. 2;
--- request
GET /x
--- response_body
ok



=== TEST 12: a key new to a starting instance, open in the fleet, is opened from Redis
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /tenant {
        breaker tenants zone=breakers key=$arg_t;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
--- init
::wait_subscribers(3);
# the first request of the key asks Redis, without waiting for the answer
my ($st) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT},
                             "/tenant?t=restoreme");
die "the first request should pass, got $st" if $st != 200;
select(undef, undef, undef, 0.3);
--- request
GET /tenant?t=restoreme
--- error_code: 503
--- error_log eval
qr/\[warn\] .*breaker "tenants" key "restoreme" opened for \d+ ms as the fleet left it, read from Redis/
--- no_error_log
[alert]



=== TEST 13: breaker_shared needs resilience_redis
--- http_config
    breaker_zone breakers 1m;
--- config
    location /api {
        breaker orders zone=breakers;
        breaker_shared on;
        return 200;
    }
--- must_die
--- error_log
"breaker_shared on" needs "resilience_redis" at http level



=== TEST 14: breaker_shared takes on or off
--- config
    location /api { breaker_shared maybe; }
--- must_die
--- error_log
invalid value "maybe" in "breaker_shared" directive, it must be "on" or "off"
