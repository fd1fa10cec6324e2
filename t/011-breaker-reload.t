# ngx_http_breaker_module across a reload: the zone keeps every breaker's
# state, so an open breaker stays open.

# a reload needs the master process, which valgrind mode turns off
BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP a reload needs master_process on, "
              . "valgrind mode runs without\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Net qw(http_get);

repeat_each(1);
no_shuffle();
master_on();
workers(1);
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_BACKENDS} = <<'_EOC_';
    location ~ ^/backend/502$ { return 502; }
_EOC_

run_tests();

__DATA__

=== TEST 1: reload keeps an open breaker open
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BACKENDS
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/api") for 1 .. 2;
my $pidfile = "$Test::Nginx::Util::ServRoot/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid;
select(undef, undef, undef, 1.5);
--- request
GET /api
--- error_code: 503
--- error_log
reconfiguring
--- no_error_log
[alert]
