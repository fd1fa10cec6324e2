# breaker_shared against a slow, a hostile and a busy fleet: a Redis that
# does not answer in time leaves every decision local (half-open
# included); the fleet's probe budget closes every instance; notices
# from Redis are bounded and checked; the sync tick costs nothing for
# idle breakers and reaches every key that has outcomes.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port redis_cli);
use NR::Net qw(http_get);
use NR::Nginx qw(nginx_start nginx_stop);
use NR::Html qw(result);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{TEST_NGINX_PEER_PORT} = free_port();

# a fresh key prefix for this run, so that no earlier run's state counts
our $Prefix = "nr:t017:$$:";
$ENV{TEST_NGINX_PREFIX} = $Prefix;

# the second instance: the same fleet breaker, over a healthy upstream
our $PeerHttp = <<"_EOC_";
    resilience_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} prefix=$Prefix
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
_EOC_

our $PeerConfig = <<"_EOC_";
    location ~ ^/backend/200\$ { return 200 "ok\\n"; }
    location /fleet {
        breaker fleet zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 3 timeout=5s;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_PEER_PORT}/backend/200;
    }
_EOC_

# waits until $n workers listen on the breaker channel
sub wait_subscribers {
    my ($n) = @_;

    for (1 .. 200) {
        my $out = redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PUBSUB", "NUMSUB",
                            "${Prefix}breaker");
        my ($count) = $out =~ /^(\d+)\s*\z/m;
        return if defined $count && $count >= $n;
        sleep 0.05;
    }

    die "fewer than $n subscribers on ${Prefix}breaker";
}

# the statuses of GET $path on $port, one every $gap s for $secs s
sub poll {
    my ($port, $path, $secs, $gap) = @_;
    my @st;
    my $end = time + $secs;

    while (time < $end) {
        my ($st) = http_get($port, $path);
        push @st, $st;
        sleep $gap;
    }

    return @st;
}

run_tests();

__DATA__

=== TEST 1: half-open while Redis is paused: the token request times out once, and the probes are decided locally
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=200ms;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location ~ ^/backend/502$ { return 502; }
    location /api {
        breaker paused zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 1 timeout=5s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
::wait_subscribers(1);
NR::Net::http_get($port, "/api?s=502");
Time::HiRes::sleep(0.3);
# EVALSHA and PUBLISH wait while Redis is paused for writes
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "CLIENT", "PAUSE", "8000", "WRITE");
Time::HiRes::sleep(1.1);
my @st = ::poll($port, "/api?s=200", 2.5, 0.1);
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "CLIENT", "UNPAUSE");
my $n503 = grep { $_ == 503 } @st;
my $last = join ' ', @st[-5 .. -1];
main::result("last five: $last\n"
             . "503s: " . ($n503 <= 8 ? "a few" : "$n503 of " . @st) . "\n");
--- request
GET /result
--- response_body
last five: 200 200 200 200 200
503s: a few
--- timeout: 15
--- no_error_log
[alert]
[crit]



=== TEST 2: the fleet's probe budget closes every instance: successes count wherever they ran
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location ~ ^/backend/502$ { return 502; }
    location /fleet {
        breaker fleet zone=breakers;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 1s jitter=0%;
        breaker_half_open 3 timeout=5s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/$arg_s;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my ($port, $peer) = ($ENV{TEST_NGINX_SERVER_PORT}, $ENV{TEST_NGINX_PEER_PORT});
NR::Nginx::nginx_start(port => $peer, http_config => $::PeerHttp,
                       config => $::PeerConfig);
::wait_subscribers(3);
# a trip here opens both, for 1 s
NR::Net::http_get($port, "/fleet?s=502");
my $open_end = Time::HiRes::time() + 1;
Time::HiRes::sleep(1.05);
my (%last503, %n);
while (Time::HiRes::time() < $open_end + 2.5) {
    for my $p ($port, $peer) {
        my ($st) = NR::Net::http_get($p, "/fleet?s=200");
        $last503{$p} = Time::HiRes::time() - $open_end if $st == 503;
        $n{$p}{$st}++;
    }
    Time::HiRes::sleep(0.02);
}
NR::Nginx::nginx_stop($peer);
my $out = '';
for my $p ([here => $port], [peer => $peer]) {
    my $t = $last503{$p->[1]} // 0;
    $out .= "$p->[0]: " . ($t < 1 ? "closed within 1 s"
                                  : sprintf("503 until %.1f s", $t)) . "\n";
}
main::result($out);
--- request
GET /result
--- response_body
here: closed within 1 s
peer: closed within 1 s
--- timeout: 15
--- no_error_log
[alert]
[crit]



=== TEST 3: a hostile notice: the open time is clamped to open max=, malformed notices are counted and dropped
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 1m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /kb {
        breaker kb zone=breakers key=$arg_k;
        breaker_shared on;
        breaker_open 2s max=10s jitter=0%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location /status { resilience_status; }
--- init
::wait_subscribers(1);
my $ch = "${main::Prefix}breaker";
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PUBLISH", $ch,
                     "kb\n99999999999999999\nvictim");
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PUBLISH", $ch, $_)
    for "kb\nsoon\nx", "no line feed", "kb\n-5\nx", "kb\n5000\n";
Time::HiRes::sleep(0.3);
--- request eval
["GET /kb?k=victim", "GET /status"]
--- error_code eval
[503, 200]
--- response_headers_like eval
["Retry-After: (10|9)\$", ""]
--- response_body_like eval
[qr//, qr/breaker_sync_malformed_total\{zone="breakers"\} 4\n/]
--- no_error_log
[alert]
[crit]



=== TEST 4: a flood of notices for unknown keys cannot fill the zone: such keys are bounded and evictable
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone small 128k;
--- config
    location ~ ^/backend/502$ { return 502; }
    location /kb {
        breaker flood zone=small key=$arg_k;
        breaker_shared on;
        breaker_consecutive_failures 1;
        breaker_open 30s jitter=0%;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/502;
    }
    location /status { resilience_status; }
--- init
::wait_subscribers(1);
my $ch = "${main::Prefix}breaker";
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "EVAL",
    'for i = 1, 1500 do redis.call("PUBLISH", KEYS[1], '
    . '"flood\\n30000\\nk" .. i) end return 1', "1", $ch);
Time::HiRes::sleep(0.5);
--- request eval
["GET /kb?k=mine", "GET /kb?k=mine", "GET /status"]
--- error_code eval
[502, 503, 200]
--- response_body_like eval
[qr//, qr//, qr/breaker_zone_full_total\{zone="small"\} 0\n/]
--- no_error_log
[alert]
[crit]



=== TEST 5: the sync tick: 300 idle keys cost no EVALSHA, and 50 new keys all have their outcomes pushed
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT prefix=$TEST_NGINX_PREFIX
                     connect_timeout=2s command_timeout=1s;
    breaker_zone breakers 4m;
--- config
    location ~ ^/backend/200$ { return 200 "ok\n"; }
    location /tick {
        breaker ticked zone=breakers key=$arg_k;
        breaker_shared on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/200;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my ($port, $rport) = ($ENV{TEST_NGINX_SERVER_PORT}, $ENV{TEST_NGINX_REDIS_PORT});
my $evalsha = sub {
    my ($n) = NR::Redis::redis_cli($rport, "INFO", "commandstats")
              =~ /^cmdstat_evalsha:calls=(\d+)/m;
    return $n // 0;
};
::wait_subscribers(1);
NR::Net::http_get($port, "/tick?k=idle$_") for 1 .. 300;
# a breaker is idle 1 s after its last outcome
Time::HiRes::sleep(2);
my $before = $evalsha->();
Time::HiRes::sleep(1.5);
my $idle = $evalsha->() - $before;
NR::Net::http_get($port, "/tick?k=new$_") for 1 .. 50;
Time::HiRes::sleep(1.5);
my $pushed = grep {
    NR::Redis::redis_cli($rport, "KEYS", "${main::Prefix}breaker:ticked:new$_:w:*")
        =~ /\S/
} 1 .. 50;
main::result("EVALSHA in 1.5 s idle: $idle\nnew keys pushed: $pushed of 50\n");
--- request
GET /result
--- response_body
EVALSHA in 1.5 s idle: 0
new keys pushed: 50 of 50
--- timeout: 20
--- no_error_log
[alert]
[crit]
