# The arithmetic's bounds: the largest rates the parser takes with the
# largest counts Redis can hand back, without overflow; sync=strict keeps
# the emission interval's nanoseconds; and the zone's memory per key.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(result);
use NR::Redis qw(redis_cli);
use NR::Net qw(http_get);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;

our $Prefix = "nr:t036:$$:";
$ENV{TEST_NGINX_PREFIX} = $Prefix;

sub wait_clients {
    my ($n) = @_;
    my $port = $ENV{TEST_NGINX_REDIS_PORT};
    for (1 .. 200) {
        my @lines = grep { /^id=/ && !/cmd=client/ } split /\n/,
                    redis_cli($port, "CLIENT", "LIST");
        return if @lines >= $n;
        Time::HiRes::sleep(0.05);
    }
    die "fewer than $n clients on port $port";
}

# how far (ms) a GCRA key's arrival time is ahead of Redis's clock
sub tat_ahead {
    my ($key) = @_;
    my $s = redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "EVAL",
        'local v = redis.call("GET", KEYS[1]) if not v then return -1 end '
        . 'local us = tonumber(string.match(v, "^(%d+)")) '
        . 'local t = redis.call("TIME") '
        . 'return math.floor((us - (t[1] * 1000000 + t[2])) / 1000)',
        "1", $key);
    return $s =~ /(-?\d+)/ ? $1 : "?$s";
}

run_tests();

__DATA__

=== TEST 1: sync=strict keeps the interval's nanoseconds: at 600000r/s a cost of 1,000,000 moves the key 1.667 s ahead, not 1 s
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     command_timeout=2s;
    ratelimit_zone fast key=one size=1m rate=600000r/s sync=strict;
--- config
    location = /ok { return 200 "ok\n"; }
    location /fast {
        ratelimit fast burst=1000000 nodelay cost=$arg_c;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::wait_clients(1);
my ($st) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/fast?c=1000000");
my $ahead = main::tat_ahead("${main::Prefix}rl:fast:one");
main::result("status=$st ahead=" . ($ahead > 1100 && $ahead <= 1667 ? "1.667s" : "${ahead}ms") . "\n");
--- request
GET /result
--- response_body
status=200 ahead=1.667s
--- no_error_log
[error]
[alert]
[crit]


=== TEST 2: no overflow at the largest rate: a full previous day (4294967295 requests) from Redis in a sliding window leaves the right number of requests
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     command_timeout=2s;
    ratelimit_zone huge key=one size=1m rate=4294967295r/d
                   algorithm=sliding_window sync=strict;
--- config
    location = /ok { return 200 "ok\n"; }
    location /huge {
        ratelimit huge;
        add_header X-Remaining $ratelimit_remaining always;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::wait_clients(1);
my $t = NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "TIME");
my ($sec) = $t =~ /(\d+)/;
my $w = int($sec / 86400);
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "SET",
                     "${main::Prefix}rl:huge:one:" . ($w - 1), "4294967295000");
my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}")
    or die;
print $sock "GET /huge HTTP/1.0\r\n\r\n";
local $/;
my $resp = <$sock>;
my ($st) = $resp =~ m{^HTTP/1\.\d (\d+)};
my ($rem) = $resp =~ /^X-Remaining: (\S+)/mi;
# what the previous day still weighs: all but the elapsed share of today
my $elapsed = (Time::HiRes::time() - $w * 86400) / 86400;
my $expect = 4294967295 * $elapsed - 1;
main::result("status=$st remaining="
             . (abs($rem - $expect) < 4294967295 * 0.001 ? "right" : "$rem (expected $expect)")
             . "\n");
--- request
GET /result
--- response_body
status=200 remaining=right
--- no_error_log
[error]
[alert]
[crit]


=== TEST 3: memory: a 1 MiB zone holds at least 8,000 keys of 48 bytes (at most 128 bytes each, as limit_req)
--- http_config
    ratelimit_zone mem key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /mem {
        ratelimit mem;
        proxy_pass http://127.0.0.1:$server_port/ok;
    }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
# 9,000 keys of 40 + 8 = 48 bytes, each still remembered (1 r/m)
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $k = "k" x 40;
my $out = `curl -s -o /dev/null -w '%{http_code}\\n' 'http://127.0.0.1:$port/mem?k=$k\[00000001-00009000\]'`;
my $ok = grep { $_ eq '200' } split /\n/, $out;
my (undef, $m) = NR::Net::http_get($port, "/status");
my ($keys) = $m =~ /^nginx_resilience_ratelimit_keys\{zone="mem"\} (\d+)/m;
my ($evicted) = $m =~ /^nginx_resilience_ratelimit_evicted_total\{zone="mem"\} (\d+)/m;
warn "t/036 TEST 3: a 1m zone holds $keys keys of 48 bytes ($evicted evicted)\n";
main::result("passed=$ok keys=" . ($keys >= 8000 ? "at-least-8000" : $keys) . "\n");
--- request
GET /result
--- response_body
passed=9000 keys=at-least-8000
--- timeout: 60
--- no_error_log
[alert]
[crit]
