# ngx_http_ratelimit_module across a reload: the zone keeps every key's
# state and the zone's counters, so a key that used its rate before the
# reload is still turned away after it, and the metrics go on counting.

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
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
master_on();
workers(1);
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;

# (config sections substitute $TEST_NGINX_* once, not inside this one)
$ENV{TEST_NGINX_LOCATIONS} = <<"_EOC_";
    location = /ok { return 200 "ok\\n"; }
    location = /pid { return 200 "\$pid"; }
    location = /status { resilience_status prometheus; }
    location /t {
        ratelimit rl;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/ok;
    }
_EOC_

# GET $path, dies unless the status is $want (a precondition)
sub expect {
    my ($path, $want) = @_;
    my ($st) = http_get($ENV{TEST_NGINX_SERVER_PORT}, $path);
    die "GET $path before the reload: $st, expected $want\n" if $st != $want;
}

# HUP to the master, then wait until the worker that served before has
# exited, so that every later request is served by the new cycle's worker
sub reload {
    my $port = $ENV{TEST_NGINX_SERVER_PORT};
    my (undef, $old) = http_get($port, "/pid");
    die "no worker pid: \"$old\"\n" unless $old =~ /^\d+$/;

    my $pidfile = "$Test::Nginx::Util::ServRoot/logs/nginx.pid";
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    my $master = <$fh>;
    chomp $master;
    kill 'HUP', $master or die "HUP $master: $!";

    my $deadline = time + 5;
    Time::HiRes::sleep(0.02) while Time::HiRes::time() < $deadline && kill(0, $old) && !zombie($old);
    die "worker $old still there 5 s after the HUP\n"
        if kill(0, $old) && !zombie($old);

    my (undef, $new) = http_get($port, "/pid");
    die "the same worker $new after the reload\n" if $new eq $old;
}

sub zombie {
    my ($pid) = @_;
    open my $in, '<', "/proc/$pid/stat" or return 1;
    my $stat = <$in> // '';
    return $stat =~ /^\d+ \(.*\) [ZX]/s;
}

run_tests();

__DATA__

=== TEST 1: a key that used its rate before the reload is rejected after it
--- http_config
    ratelimit_zone rl key=$arg_k size=1m rate=1r/m;
--- config
    $TEST_NGINX_LOCATIONS
--- init
main::expect("/t?k=a", 200);
main::reload();
--- request
GET /t?k=a
--- error_code: 429
--- response_headers_like
Retry-After: (?:59|60)
--- error_log eval
["reconfiguring",
 qr/limiting requests, excess: (?:0\.9\d\d|1\.000) by zone "rl"/]
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 2: the zone's metrics go on counting across the reload
--- http_config
    ratelimit_zone rl key=$arg_k size=1m rate=1r/m;
--- config
    $TEST_NGINX_LOCATIONS
--- init
# before: a passes, then is rejected; after: a is still rejected, b (a
# new key) passes.  Were the keys forgotten, a would pass (passed 3,
# rejected 1); were the counters reset, passed 1, rejected 1.
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, $_) for "/t?k=a", "/t?k=a";
main::reload();
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, $_) for "/t?k=a", "/t?k=b";
--- request
GET /status
--- response_body_like eval
qr/^nginx_resilience_ratelimit_requests_total\{zone="rl",outcome="passed"\}[ ]2\n
nginx_resilience_ratelimit_requests_total\{zone="rl",outcome="delayed"\}[ ]0\n
nginx_resilience_ratelimit_requests_total\{zone="rl",outcome="rejected"\}[ ]2\n
nginx_resilience_ratelimit_requests_total\{zone="rl",outcome="dry_run_rejected"\}[ ]0\n
.*^nginx_resilience_ratelimit_keys\{zone="rl"\}[ ]2\n/msx
--- error_log
reconfiguring
--- no_error_log
[alert]
[crit]
[emerg]
