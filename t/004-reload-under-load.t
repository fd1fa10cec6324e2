# Every module at once, reloaded three times under load: no request is
# lost or fails (DESIGN.md: "a reload under load drops no request"); and
# Redis killed and started again under load: no request fails either
# ("Redis down means local-only operation ... never a failed request").  ab
# opens a connection per request (no keepalive: a keepalive connection
# that a closing worker shuts while a request is on its way is a race of
# HTTP itself, stock nginx's too), eight at a time, for 3 s, while the
# master gets HUP three times; each reload starts new workers whose Redis
# connections, sync timers, probes and discovery start again and old
# workers that must let go of theirs.

BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP a reload needs master_process on, "
              . "valgrind mode runs without\n";
        exit 0;
    }
    if (system("command -v ab >/dev/null 2>&1") != 0) {
        print "1..0 # SKIP ab (apache2-utils) is not installed\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Html qw(result);
use NR::Nginx;
use NR::Net;
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
master_on();
workers(2);
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{TEST_NGINX_BACKEND_PORT} = free_port();
$ENV{TEST_NGINX_PREFIX} = "nr:t004:$$:";
$ENV{TEST_NGINX_FLAKY_REDIS_PORT} = free_port();

# ab against $url for 3 s, eight connections at a time, in the background
sub ab_start {
    my ($url) = @_;
    my $out = "$Test::Nginx::Util::HtmlDir/ab.txt";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        exec("ab -q -t 3 -n 1000000 -c 8 '$url' > '$out' 2>&1")
            or POSIX::_exit(1);
    }
    return $pid;
}

# waits for ab, then "requests=many failed=N non2xx=N"
sub ab_result {
    my ($pid) = @_;
    waitpid($pid, 0);
    my $out = "$Test::Nginx::Util::HtmlDir/ab.txt";
    open my $fh, '<', $out or die "$out: $!";
    my $t = do { local $/; <$fh> };
    close $fh;
    my ($complete) = $t =~ /^Complete requests:\s+(\d+)/m;
    my ($failed) = $t =~ /^Failed requests:\s+(\d+)/m;
    my ($non2xx) = $t =~ /^Non-2xx responses:\s+(\d+)/m;
    $complete //= 0;
    return "requests=" . ($complete >= 1000 ? "many" : $complete)
           . " failed=" . ($failed // 'none') . " non2xx=" . ($non2xx // 0);
}

run_tests();

__DATA__

=== TEST 1: three reloads during 3 s of load: every request answered 200, the old workers gone at once
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX;
    breaker_zone breakers 1m;
    ratelimit_zone perip key=$binary_remote_addr size=1m rate=100000r/s
                   sync=redis sync_interval=100ms;
    server {
        listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        location / { return 200 "ok\n"; }
    }
    upstream app {
        health_check uri=/ interval=200ms;
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
        server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        keepalive 8;
    }
--- config
    location /work {
        ratelimit perip burst=100000 nodelay;
        breaker work zone=breakers;
        breaker_shared on;
        deadline 2s;
        deadline_propagate x-deadline-ms ms;
        proxy_pass http://app/;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
open my $pf, '>', "$Test::Nginx::Util::HtmlDir/peers.json" or die $!;
print $pf qq(["127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}"]);
close $pf;
Time::HiRes::sleep(0.5);
my $ab = main::ab_start("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/work");
my $reloads = 0;
my $slowest = 0;
for (1 .. 3) {
    Time::HiRes::sleep(0.6);
    # until the old workers are gone: their Redis connections, timers,
    # probes and source fetches must not hold them
    my $start = Time::HiRes::time();
    NR::Nginx::reload_and_wait($Test::Nginx::Util::PidFile);
    my $took = Time::HiRes::time() - $start;
    $slowest = $took if $took > $slowest;
    $reloads++;
}
my $r = main::ab_result($ab);
main::result("reloads=$reloads old-workers="
             . ($slowest < 3 ? "gone-at-once" : "slowest-${slowest}s") . " $r\n");
--- request
GET /result
--- response_body
reloads=3 old-workers=gone-at-once requests=many failed=0 non2xx=0
--- timeout: 20
--- no_error_log
[alert]
[crit]



=== TEST 2: Redis killed and started again under load: every request answered 200
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_FLAKY_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=200ms command_timeout=200ms;
    breaker_zone breakers 1m;
    ratelimit_zone perip key=$binary_remote_addr size=1m rate=100000r/s
                   sync=redis sync_interval=100ms;
    ratelimit_zone strict key=$binary_remote_addr size=1m rate=100000r/s
                   sync=strict on_redis_error=local;
    server {
        listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        location / { return 200 "ok\n"; }
    }
--- config
    location /work {
        ratelimit perip burst=100000 nodelay;
        ratelimit strict burst=100000 nodelay;
        breaker work zone=breakers;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location = /status { resilience_status prometheus; }
--- init
my $port = $ENV{TEST_NGINX_FLAKY_REDIS_PORT};
NR::Redis::redis_start($port);
Time::HiRes::sleep(0.5);
my $ab = main::ab_start("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/work");
Time::HiRes::sleep(0.8);
NR::Redis::redis_kill($port);
Time::HiRes::sleep(1);
NR::Redis::redis_start($port);
my $r = main::ab_result($ab);
NR::Redis::redis_kill($port);
# the strict zone did lose Redis: it decided here meanwhile
my (undef, $m) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
my ($fb) = $m =~ /^nginx_resilience_ratelimit_fallbacks_total\{zone="strict"\} (\d+)/m;
main::result("$r fallbacks=" . (($fb // 0) > 0 ? "some" : "none") . "\n");
--- request
GET /result
--- response_body
requests=many failed=0 non2xx=0 fallbacks=some
--- timeout: 20
--- no_error_log
[alert]
[crit]
