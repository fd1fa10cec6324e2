# sync=redis applies every charge exactly once: a batch whose answer timed
# out is sent again with its id, never as new charges; every key with
# charges reaches Redis, whatever the number of keys.  on_redis_error=local
# charges every limit with the factor it was checked with, and a share is
# a share of the rate.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(result);
use NR::Redis qw(free_port redis_cli redis_start redis_kill);
use NR::Net qw(http_get);
use NR::Nginx qw(nginx_start nginx_stop);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{TEST_NGINX_PEER_PORT} = free_port();
$ENV{TEST_NGINX_FLAKY_REDIS_PORT} = free_port();

our $Prefix = "nr:t035:$$:";
$ENV{TEST_NGINX_PREFIX} = $Prefix;

# waits until $n connections from nginx workers are up on Redis
sub wait_clients {
    my ($n, $port) = @_;
    $port ||= $ENV{TEST_NGINX_REDIS_PORT};
    for (1 .. 200) {
        my @lines = grep { /^id=/ && !/cmd=client/ } split /\n/,
                    redis_cli($port, "CLIENT", "LIST");
        return if @lines >= $n;
        Time::HiRes::sleep(0.05);
    }
    die "fewer than $n clients on port $port";
}

# the sum of the counters whose names match $pattern (milli-requests)
sub redis_sum {
    my ($pattern, $port) = @_;
    my $s = redis_cli($port || $ENV{TEST_NGINX_REDIS_PORT}, "EVAL",
                      'local s = 0 for _, k in ipairs(redis.call("KEYS", '
                      . 'ARGV[1])) do s = s + tonumber(redis.call("GET", k)) '
                      . 'end return s', "0", $pattern);
    return $s =~ /^\(?(?:integer\)\s*)?(\d+)\s*$/ ? $1 : "?$s";
}

# GET $path?k=<prefix>1 .. <prefix>$n over one kept-alive connection: the
# count of 200s
sub curl_keys {
    my ($port, $path, $prefix, $n) = @_;
    my $out = `curl -s -o /dev/null -w '%{http_code}\\n' 'http://127.0.0.1:$port$path?k=$prefix\[1-$n\]'`;
    return scalar grep { $_ eq '200' } split /\n/, $out;
}

sub letters {
    my ($port, $path, $n) = @_;
    my $s = '';
    for (1 .. $n) {
        my ($st) = http_get($port, $path);
        $s .= $st == 200 ? 'P' : $st == 429 ? 'R' : "?$st";
    }
    return $s;
}

run_tests();

END { nginx_stop($ENV{TEST_NGINX_PEER_PORT}) }

__DATA__

=== TEST 1: sync=redis exactly once: 100 requests, Redis paused (CLIENT PAUSE 300) past command_timeout while syncs are in flight: Redis holds exactly 100
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     command_timeout=50ms;
    ratelimit_zone once key=one size=1m rate=100000r/d
                   algorithm=sliding_window sync=redis sync_interval=50ms;
--- config
    location = /ok { return 200 "ok\n"; }
    location /once {
        ratelimit once;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::wait_clients(1);
my $h = $ENV{TEST_NGINX_SERVER_PORT};
my $ok = 0;
for my $i (1 .. 100) {
    my ($st) = NR::Net::http_get($h, "/once");
    $ok++ if $st == 200;
    # half of them while Redis is paused: their syncs time out
    NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "CLIENT", "PAUSE", "300")
        if $i == 50;
    Time::HiRes::sleep(0.005) if $i > 50;
}
Time::HiRes::sleep(1.5);
my $sum = main::redis_sum("${main::Prefix}rl:once:one:*");
main::result("passed=$ok redis=" . ($sum =~ /^\d+$/ ? $sum / 1000 : $sum) . "\n");
--- request
GET /result
--- response_body
passed=100 redis=100
--- timeout: 10
--- error_log
could not sync with Redis (timed out)
--- no_error_log
[alert]
[crit]


=== TEST 2: sync=redis at high key counts: 20,000 new keys on two instances, Redis totals equal the local charges within two sync intervals
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     command_timeout=1s;
    ratelimit_zone m key=$arg_k size=10m rate=1000r/d
                   algorithm=sliding_window sync=redis sync_interval=250ms;
--- config
    location = /ok { return 200 "ok\n"; }
    location /m {
        ratelimit m;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $zones = <<"_EOC_";
    resilience_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} prefix=$main::Prefix
                     command_timeout=1s;
    ratelimit_zone m key=\$arg_k size=10m rate=1000r/d
                   algorithm=sliding_window sync=redis sync_interval=250ms;
_EOC_
my $locations = <<"_EOC_";
    location = /ok { return 200 "ok\\n"; }
    location /m {
        ratelimit m;
        proxy_pass http://127.0.0.1:\$server_port/ok;
    }
_EOC_
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $zones, config => $locations);
main::wait_clients(3);
my $dir = $Test::Nginx::Util::HtmlDir;
my $start = Time::HiRes::time();
my @pids;
for my $p ([$ENV{TEST_NGINX_SERVER_PORT}, "a"], [$ENV{TEST_NGINX_PEER_PORT}, "b"]) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my $ok = main::curl_keys($p->[0], "/m", $p->[1], 10000);
        open my $fh, '>', "$dir/ok-$p->[1]" or POSIX::_exit(1);
        print $fh $ok;
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid($_, 0) for @pids;
my $took = Time::HiRes::time() - $start;
my $ok = 0;
for my $k ("a", "b") {
    open my $fh, '<', "$dir/ok-$k" or die;
    $ok += <$fh>;
}
# two sync intervals
Time::HiRes::sleep(0.5);
my $a = main::redis_sum("${main::Prefix}rl:m:a*");
my $b = main::redis_sum("${main::Prefix}rl:m:b*");
my $sum = ($a =~ /^\d+$/ && $b =~ /^\d+$/) ? ($a + $b) / 1000 : "$a+$b";
warn "t/035 TEST 2: 20000 requests took $took s; redis=$sum\n";
main::result("passed=$ok redis=" . ($sum eq $ok ? "equal" : $sum) . "\n");
--- request
GET /result
--- response_body
passed=20000 redis=equal
--- timeout: 60
--- no_error_log
[alert]
[crit]


=== TEST 3: Redis killed with two instances in the census, on_redis_error=local: burst 0 passes half the rate on each; a limit charged after another has the factor it was checked with
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_FLAKY_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=200ms command_timeout=200ms;
    ratelimit_zone half key=one size=1m rate=20r/s sync=redis sync_interval=50ms;
    ratelimit_zone fa key=one size=1m rate=1r/m sync=redis sync_interval=50ms;
    ratelimit_zone fb key=one size=1m rate=1r/m sync=redis sync_interval=50ms;
    ratelimit_zone big key=one size=1m rate=1000r/s;
--- config
    location = /ok { return 200 "ok\n"; }
    location /half { ratelimit half; proxy_pass http://127.0.0.1:$server_port/ok; }
    location /a {
        ratelimit fa burst=10 nodelay;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location /b {
        ratelimit fb burst=10 nodelay;
        ratelimit big;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $port = $ENV{TEST_NGINX_FLAKY_REDIS_PORT};
NR::Redis::redis_start($port);
my $zones = <<"_EOC_";
    resilience_redis 127.0.0.1:$port prefix=$main::Prefix
                     connect_timeout=200ms command_timeout=200ms;
    ratelimit_zone half key=one size=1m rate=20r/s sync=redis sync_interval=50ms;
_EOC_
my $locations = <<"_EOC_";
    location = /ok { return 200 "ok\\n"; }
    location /half { ratelimit half; proxy_pass http://127.0.0.1:\$server_port/ok; }
_EOC_
NR::Nginx::nginx_start(port => $ENV{TEST_NGINX_PEER_PORT},
                       http_config => $zones, config => $locations);
main::wait_clients(3, $port);
# both instances in the census of "half"; the main one alone could
# count only itself in fa and fb, so they get a second member by hand
my $census = sub {
    my $s = NR::Redis::redis_cli($port, "EVAL",
        'local m = 0 for _, k in ipairs(redis.call("KEYS", ARGV[1])) do '
        . 'local c = redis.call("ZCARD", k) if c > m then m = c end end '
        . 'return m', "0", $_[0]);
    return $s =~ /(\d+)/ ? $1 : 0;
};
for (1 .. 100) {
    last if $census->("${main::Prefix}rl:half:*census") >= 2
            && $census->("${main::Prefix}rl:fa:*census") >= 1
            && $census->("${main::Prefix}rl:fb:*census") >= 1;
    Time::HiRes::sleep(0.05);
}
NR::Redis::redis_cli($port, "EVAL",
    'for _, k in ipairs(redis.call("KEYS", ARGV[1])) do '
    . 'redis.call("ZADD", k, ARGV[2], "another") end return 1', "0",
    "${main::Prefix}rl:f*census", int(Time::HiRes::time() * 1000));
# each instance reads the census at its next syncs
Time::HiRes::sleep(1.5);
NR::Redis::redis_kill($port);
Time::HiRes::sleep(0.3);
my $dir = $Test::Nginx::Util::HtmlDir;
my @pids;
for my $p ($ENV{TEST_NGINX_SERVER_PORT}, $ENV{TEST_NGINX_PEER_PORT}) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my ($ok, $n) = (0, 0);
        my $start = Time::HiRes::time();
        while (Time::HiRes::time() - $start < 2) {
            my ($st) = NR::Net::http_get($p, "/half");
            $ok++ if $st == 200;
            $n++;
            Time::HiRes::sleep(0.01);
        }
        my $took = Time::HiRes::time() - $start;
        open my $fh, '>', "$dir/half-$p" or POSIX::_exit(1);
        # passed, and passed over what half the rate allows
        printf $fh "%d %.2f %d", $ok, $ok / (1 + 10 * $took), $n;
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid($_, 0) for @pids;
my $out = '';
for my $p ($ENV{TEST_NGINX_SERVER_PORT}, $ENV{TEST_NGINX_PEER_PORT}) {
    open my $fh, '<', "$dir/half-$p" or die;
    my ($ok, $ratio, $n) = split ' ', <$fh>;
    warn "t/035 TEST 3: port $p passed $ok of $n, $ratio of half the rate\n";
    $out .= ($ratio >= 0.7 && $ratio <= 1.3 ? "half" : "$ok($ratio)") . " ";
}
my $a = main::letters($ENV{TEST_NGINX_SERVER_PORT}, "/a", 30) =~ tr/P//;
my $b = main::letters($ENV{TEST_NGINX_SERVER_PORT}, "/b", 30) =~ tr/P//;
main::result("${out}alone=$a after-another=$b\n");
--- request
GET /result
--- response_body
half half alone=6 after-another=6
--- timeout: 20
--- no_error_log
[alert]
[crit]
