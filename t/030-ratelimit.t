# ngx_http_ratelimit_module on one instance: GCRA side by side with stock
# limit_req (nodelay, burst, delay=), several limits and the all-or-nothing
# rule, cost, empty keys, fractional and long-period rates, the sliding
# window, headers and Retry-After, dry run, statuses and log levels, a
# full zone that evicts instead of rejecting, hostile keys, and metrics.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(result);
use NR::Net qw(http_get http_burst);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;

# what init code found, served back to the test at /result

# the letters of the statuses of sequential requests
sub seq {
    my ($path, $n) = @_;
    my $s = '';
    for (1 .. $n) {
        my ($st) = http_get($ENV{TEST_NGINX_SERVER_PORT}, $path);
        $s .= $st == 200 ? 'P' : $st == 429 || $st == 503 ? 'R' : "?$st";
    }
    return $s;
}

# a burst of $n concurrent requests: how many passed at once, were
# delayed (by more than 80 ms), were rejected; from the X-S header
sub burst {
    my ($path, $n) = @_;
    my %c = (P => 0, D => 0, R => 0);
    for my $r (http_burst($ENV{TEST_NGINX_SERVER_PORT}, $path, $n)) {
        my ($st, $head, $t) = @$r;
        if ($st != 200) { $c{R}++; next }
        my ($s) = $head =~ /^X-S: (\S+)/mi;
        $c{ $s eq 'DELAYED' && $t > 0.08 ? 'D' : 'P' }++;
    }
    return "P$c{P} D$c{D} R$c{R}";
}

run_tests();

__DATA__

=== TEST 1: nodelay: the same passed / rejected sequence as limit_req
--- http_config
    ratelimit_zone rl key=$binary_remote_addr size=1m rate=10r/s;
    limit_req_zone $binary_remote_addr zone=lr:1m rate=10r/s;
--- config
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location = /ok { return 200 "ok\n"; }
    location /ours {
        ratelimit rl burst=3 nodelay;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /stock {
        limit_req zone=lr burst=3 nodelay;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
my ($ours, $stock) = ('', '');
for (1 .. 8) {
    $ours .= main::seq('/ours', 1);
    $stock .= main::seq('/stock', 1);
}
main::result("ours=$ours\nstock=$stock\n");
--- request
GET /result
--- response_body_like chomp
\Aours=(PPPPRRRR)\nstock=\1\n\z
--- no_error_log
[alert]
[crit]


=== TEST 2: burst and delay=: passed at once, delayed, rejected, as many as limit_req
--- http_config
    ratelimit_zone rl key=$binary_remote_addr size=1m rate=5r/s;
    limit_req_zone $binary_remote_addr zone=lr:1m rate=5r/s;
--- config
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location = /ok { return 200 "ok\n"; }
    location /ours {
        ratelimit rl burst=5 delay=2;
        add_header X-S $ratelimit_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /stock {
        limit_req zone=lr burst=5 delay=2;
        add_header X-S $limit_req_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
my $ours = main::burst('/ours', 10);
my $stock = main::burst('/stock', 10);
main::result("ours=$ours\nstock=$stock\n");
--- request
GET /result
--- response_body_like chomp
\Aours=(P3 D3 R4)\nstock=\1\n\z
--- timeout: 5
--- no_error_log
[alert]
[crit]


=== TEST 3: burst without nodelay delays every excess request, as limit_req
--- http_config
    ratelimit_zone rl key=$binary_remote_addr size=1m rate=10r/s;
    limit_req_zone $binary_remote_addr zone=lr:1m rate=10r/s;
--- config
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location = /ok { return 200 "ok\n"; }
    location /ours {
        ratelimit rl burst=3;
        add_header X-S $ratelimit_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /stock {
        limit_req zone=lr burst=3;
        add_header X-S $limit_req_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
my $ours = main::burst('/ours', 7);
my $stock = main::burst('/stock', 7);
main::result("ours=$ours\nstock=$stock\n");
--- request
GET /result
--- response_body_like chomp
\Aours=(P1 D3 R3)\nstock=\1\n\z
--- timeout: 5
--- no_error_log
[alert]
[crit]


=== TEST 4: a delayed request waits on a timer, the worker keeps serving
--- http_config
    ratelimit_zone rl key=$arg_k size=1m rate=2r/s;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl burst=2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
# k=a: the first passes, the next two wait 500 and 1000 ms
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/t?k=a", 2) for 1 .. 3;
Time::HiRes::sleep(0.1);
--- request
GET /t?k=b
--- response_body
ok
--- error_log
delaying request, excess:
--- no_error_log
[error]


=== TEST 5: several limits: a request passes only if every one does, and a rejected one is charged to none
--- http_config
    ratelimit_zone user key=$arg_u size=1m rate=1r/m;
    ratelimit_zone global key=global size=1m rate=1r/m;
--- config
    location /p {
        ratelimit user burst=1 nodelay;
        ratelimit global burst=3 nodelay;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /ok { return 200 "ok\n"; }
--- request eval
["GET /p?u=x", "GET /p?u=x", "GET /p?u=x", "GET /p?u=x",
 "GET /p?u=y", "GET /p?u=y", "GET /p?u=z"]
--- error_code eval
[200, 200, 429, 429, 200, 200, 429]
--- no_error_log
[alert]


=== TEST 6: cost from a variable; 0 checks without charging; a rejected cost charges nothing
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl burst=9 nodelay cost=$arg_c;
        add_header X-Remaining $ratelimit_remaining always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?c=4", "GET /t?c=4", "GET /t?c=0", "GET /t?c=3", "GET /t?c=2",
 "GET /t?c=0"]
--- error_code eval
[200, 200, 200, 429, 200, 429]
--- response_headers eval
["X-Remaining: 6", "X-Remaining: 2", "X-Remaining: 1", "X-Remaining: 0",
 "X-Remaining: 0", "X-Remaining: 0"]
--- no_error_log
[alert]
[crit]


=== TEST 7: a cost that is not a number is logged and counts 1
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl burst=9 nodelay cost=$arg_c;
        add_header X-Remaining $ratelimit_remaining always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request
GET /t?c=-5
--- response_headers
X-Remaining: 9
--- error_log
ratelimit: cost "-5" is not a number, zone "rl" charges 1



=== TEST 7b: a cost of any length is capped at 1,000,000: 7, 11 and 20 digits are all rejected by a burst below it
--- http_config
    ratelimit_zone rl key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location /t {
        ratelimit rl burst=999998 nodelay cost=$arg_c;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
my @s;
for my $q ("k=a&c=2000000", "k=d&c=00000000000999999",
           "k=e&c=000000000001000000", "k=b&c=99999999999",
           "k=c&c=18446744073709551617") {
    my ($st) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t?$q");
    push @s, $st;
}
main::result("@s\n");
--- request
GET /result
--- response_body
429 200 429 429 429
--- error_log eval
[qr/ratelimit: cost "99999999999" capped at 1000000 in zone "rl"/,
 qr/ratelimit: cost "18446744073709551617" capped at 1000000 in zone "rl"/]
--- no_error_log
[alert]
[crit]


=== TEST 8: an empty key exempts the request
--- http_config
    ratelimit_zone rl key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl nodelay;
        add_header X-S "[$ratelimit_status]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t?k=a", "GET /t?k=a", "GET /t?k=b"]
--- error_code eval
[200, 200, 200, 200, 429, 200]
--- response_headers eval
["X-S: []", "X-S: []", "X-S: []", "X-S: [PASSED]", "X-S: [REJECTED]",
 "X-S: [PASSED]"]
--- no_error_log
[alert]
[crit]


=== TEST 9: fractional and long-period rates, with an exact Retry-After
--- http_config
    ratelimit_zone half key=$arg_k size=1m rate=0.5r/s;
    ratelimit_zone hourly key=$arg_k size=1m rate=30r/h;
    ratelimit_zone daily key=$arg_k size=1m rate=1r/d;
--- config
    location = /ok { return 200 "ok\n"; }
    location /half { ratelimit half; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok; }
    location /hourly { ratelimit hourly; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok; }
    location /daily { ratelimit daily; proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok; }
--- request eval
["GET /half?k=a", "GET /half?k=a", "GET /hourly?k=a", "GET /hourly?k=a",
 "GET /daily?k=a", "GET /daily?k=a"]
--- error_code eval
[200, 429, 200, 429, 200, 429]
--- response_headers eval
["Retry-After: ", "Retry-After: 2", "Retry-After: ", "Retry-After: 120",
 "Retry-After: ", "Retry-After: 86400"]
--- no_error_log
[alert]


=== TEST 10: draft headers: RateLimit-Policy and RateLimit, and Retry-After on a rejection
--- http_config
    ratelimit_zone api key=$arg_k size=1m rate=6r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit api burst=2 nodelay;
        ratelimit_headers draft;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?k=a", "GET /t?k=a", "GET /t?k=a", "GET /t?k=a"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers eval
["RateLimit-Policy: \"api\";q=6;w=60\nRateLimit: \"api\";r=2;t=10\nRetry-After: ",
 "RateLimit: \"api\";r=1;t=20",
 "RateLimit: \"api\";r=0;t=30",
 "RateLimit-Policy: \"api\";q=6;w=60\nRateLimit: \"api\";r=0;t=30\nRetry-After: 10"]
--- no_error_log
[alert]


=== TEST 11: legacy headers
--- http_config
    ratelimit_zone api key=$arg_k size=1m rate=100r/s;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit api burst=10 nodelay;
        ratelimit_headers legacy;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request
GET /t?k=a
--- response_headers
X-RateLimit-Limit: 100
X-RateLimit-Remaining: 10
X-RateLimit-Reset: 1
RateLimit:
--- no_error_log
[error]


=== TEST 12: headers off by default, and inherited from server level
--- http_config
    ratelimit_zone api key=$arg_k size=1m rate=1r/m;
--- config
    ratelimit_headers draft;
    location = /ok { return 200 "ok\n"; }
    location /inherits {
        ratelimit api;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /off {
        ratelimit api;
        ratelimit_headers off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /inherits?k=a", "GET /off?k=b", "GET /off?k=b"]
--- error_code eval
[200, 200, 429]
--- response_headers eval
["RateLimit: \"api\";r=0;t=60", "RateLimit: \nX-RateLimit-Limit: ",
 "RateLimit: \nRetry-After: 60"]
--- no_error_log
[alert]


=== TEST 13: dry run counts and logs, never rejects
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl;
        ratelimit_dry_run on;
        add_header X-S $ratelimit_status always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-S: PASSED", "X-S: REJECTED_DRY_RUN", "X-S: REJECTED_DRY_RUN"]
--- no_error_log
[alert]


=== TEST 14: the dry run's log line is limit_req's
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl;
        ratelimit_dry_run on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t");
--- request
GET /t
--- error_code: 200
--- error_log eval
qr/\[error\] .*limiting requests, dry run, excess: (1\.000|0\.9\d\d) by zone "rl"/


=== TEST 15: ratelimit_status and ratelimit_log_level
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl;
        ratelimit_status 503;
        ratelimit_log_level warn;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t");
--- request
GET /t
--- error_code: 503
--- error_log eval
qr/\[warn\] .*limiting requests, excess: (1\.000|0\.9\d\d) by zone "rl"/
--- no_error_log
[error]


=== TEST 16: the rejection is logged at error by default, as limit_req's
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t");
--- request
GET /t
--- error_code: 429
--- error_log eval
qr/\[error\] .*limiting requests, excess: (1\.000|0\.9\d\d) by zone "rl"/


=== TEST 17: limits inherit from server to location; an error_page keeps Retry-After
--- http_config
    ratelimit_zone rl key=one size=1m rate=1r/m;
--- config
    ratelimit rl;
    location = /ok { return 200 "ok\n"; }
    location /t {
        error_page 429 /busy;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /busy { return 429 "slow down\n"; }
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]
--- response_body eval
["ok\n", "slow down\n"]
--- response_headers eval
["Retry-After: ", "Retry-After: 60"]
--- no_error_log
[alert]


=== TEST 18: the sliding window: the previous window weighs in by its remaining share
--- http_config
    ratelimit_zone sw key=one size=1m rate=4r/s algorithm=sliding_window;
--- config
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit sw;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- init
# the first window: 4 pass, the 5th does not; 60% into the next one the
# previous counts 40% (1.6): two more pass, the third does not
my $t = Time::HiRes::time();
Time::HiRes::sleep(1.05 - ($t - int($t)));
my $a = main::seq('/t', 5);
$t = Time::HiRes::time();
Time::HiRes::sleep(1.6 - ($t - int($t)));
my $b = main::seq('/t', 3);
main::result("$a $b\n");
--- request
GET /result
--- response_body
PPPPR PPR
--- timeout: 5
--- no_error_log
[alert]
[crit]


=== TEST 19: the sliding window's headers and Retry-After
--- http_config
    ratelimit_zone quota key=$arg_k size=1m rate=3r/m algorithm=sliding_window;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit quota burst=1;
        ratelimit_headers draft;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?k=a", "GET /t?k=a", "GET /t?k=a", "GET /t?k=a", "GET /t?k=a"]
--- error_code eval
[200, 200, 200, 200, 429]
--- response_headers_like eval
["RateLimit-Policy: \"quota\";q=4;w=60\nRateLimit: \"quota\";r=3;t=\\d+",
 "RateLimit: \"quota\";r=2;t=\\d+", "RateLimit: \"quota\";r=1;t=\\d+",
 "RateLimit: \"quota\";r=0;t=\\d+", "Retry-After: [1-9]\\d*"]
--- no_error_log
[alert]
[crit]


=== TEST 20: a full zone evicts the least recently used keys and rejects no one
--- http_config
    ratelimit_zone tiny key=$arg_k size=32k rate=1r/m;
--- config
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit tiny;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /status { resilience_status prometheus; }
--- init
my %st;
for my $i (1 .. 1500) {
    my ($s) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t?k=key$i");
    $st{$s}++;
}
# the most recent key is remembered
my ($again) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t?k=key1500");
my (undef, $m) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
my ($ev) = $m =~ /^nginx_resilience_ratelimit_evicted_total\{zone="tiny"\} (\d+)/m;
my ($keys) = $m =~ /^nginx_resilience_ratelimit_keys\{zone="tiny"\} (\d+)/m;
main::result(join(" ", map { "$_=$st{$_}" } sort keys %st)
             . " again=$again evicted=" . ($ev > 1000 ? "many" : $ev)
             . " keys=" . ($keys > 100 && $keys < 300 ? "some" : $keys) . "\n");
--- request
GET /result
--- response_body
200=1500 again=429 evicted=many keys=some
--- timeout: 20
--- no_error_log
[alert]
[crit]


=== TEST 21: hostile keys: huge ones are hashed (and still told apart), binary ones work
--- http_config
    ratelimit_zone rl key=$http_x_key size=1m rate=1r/m;
    ratelimit_zone bin key=$binary_remote_addr$arg_b size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /b {
        ratelimit bin;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /b?b=%00%ff", "GET /b?b=%00%ff",
 "GET /b?b=%00%fe"]
--- more_headers eval
["X-Key: " . ("a" x 6000), "X-Key: " . ("a" x 6000), "X-Key: " . ("a" x 5999) . "b",
 "", "", ""]
--- error_code eval
[200, 429, 200, 200, 429, 200]
--- no_error_log
[alert]
[crit]
[alert]


=== TEST 22: metrics per zone: passed, delayed, rejected, dry run, keys
--- http_config
    ratelimit_zone m1 key=$arg_k size=1m rate=1r/m;
    ratelimit_zone m2 key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit m1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location /dry {
        ratelimit m2;
        ratelimit_dry_run on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /status { resilience_status prometheus; }
--- init
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, $_)
    for "/t?k=a", "/t?k=a", "/t?k=a", "/t?k=b", "/dry?k=a", "/dry?k=a";
--- request
GET /status
--- response_body_like eval
qr/nginx_resilience_ratelimit_requests_total\{zone="m1",outcome="passed"\}[ ]2\n.*
nginx_resilience_ratelimit_requests_total\{zone="m1",outcome="delayed"\}[ ]0\n
nginx_resilience_ratelimit_requests_total\{zone="m1",outcome="rejected"\}[ ]2\n
nginx_resilience_ratelimit_requests_total\{zone="m1",outcome="dry_run_rejected"\}[ ]0\n
nginx_resilience_ratelimit_requests_total\{zone="m2",outcome="passed"\}[ ]1\n.*
nginx_resilience_ratelimit_requests_total\{zone="m2",outcome="dry_run_rejected"\}[ ]1\n.*
nginx_resilience_ratelimit_keys\{zone="m1"\}[ ]2\n
nginx_resilience_ratelimit_keys\{zone="m2"\}[ ]1\n/xs
--- no_error_log
[alert]
[crit]


=== TEST 23: a sliding window below one request per period counts whole requests over a wider window
--- http_config
    ratelimit_zone half key=$arg_k size=1m rate=0.5r/s algorithm=sliding_window;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit half;
        ratelimit_headers draft;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
--- request eval
["GET /t?k=a", "GET /t?k=a"]
--- error_code eval
[200, 429]
--- response_headers_like eval
["RateLimit-Policy: \"half\";q=1;w=2", "Retry-After: [1-4]"]
--- no_error_log
[alert]
[crit]


=== TEST 24: a ratelimit delay counts against the request's deadline (they meet on the request's arrival time)
--- http_config
    ratelimit_zone rl key=one size=1m rate=2r/s;
--- config
    location = /echo { return 200 "left=$http_x_deadline_ms\n"; }
    location /t {
        ratelimit rl burst=1;
        deadline 2s;
        deadline_propagate X-Deadline-Ms ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
# the first passes at once, the second waits 500 ms in ratelimit
my @r = map { my (undef, $b) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/t"); $b } 1 .. 2;
my ($a) = $r[0] =~ /left=(\d+)/;
my ($b) = $r[1] =~ /left=(\d+)/;
main::result(($a >= 1900 ? "first-full" : "first=$a") . " "
             . ($a - $b >= 400 && $b > 1000 ? "second-less-by-the-delay" : "second=$b") . "\n");
--- request
GET /result
--- response_body
first-full second-less-by-the-delay
--- timeout: 5
--- no_error_log
[alert]
[crit]


=== TEST 25: dry run as limit_req_dry_run.t: PASSED, DELAYED_DRY_RUN, REJECTED_DRY_RUN, and limit_req's log lines at its levels
--- http_config
    ratelimit_zone one key=$binary_remote_addr size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location = /echo { return 200 "[$http_x_status]"; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
    location /l {
        ratelimit_dry_run on;
        proxy_set_header X-Status $ratelimit_status;
        location /l/delay {
            ratelimit one burst=2;
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        }
        location /l/reject {
            ratelimit one;
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        }
        location /l/reject/off {
            ratelimit one;
            ratelimit_dry_run off;
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        }
        location /l/none {
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
        }
    }
--- init
my $s = '';
for my $path ("/l/delay", "/l/delay", "/l/reject", "/l/reject/off", "/l/none") {
    my ($st, $body) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, $path);
    $s .= "$path $st" . ($st == 200 ? " $body" : "") . "\n";
}
main::result($s);
--- request
GET /result
--- response_body
/l/delay 200 [PASSED]
/l/delay 200 [DELAYED_DRY_RUN]
/l/reject 200 [REJECTED_DRY_RUN]
/l/reject/off 429
/l/none 200 []
--- error_log eval
[qr/\[warn\] .*delaying request, dry run, excess: (1\.000|0\.9\d\d), by zone "one"/,
 qr/\[error\] .*limiting requests, dry run, excess: (2\.000|1\.9\d\d) by zone "one"/,
 qr/\[error\] .*limiting requests, excess: (2\.000|1\.9\d\d) by zone "one"/]
--- no_error_log
[alert]


=== TEST 26: hostile keys: two keys with the same crc32 are told apart and each is limited
k29685295 and k32060020 share the crc32 0x3973d855; before, the lookup
took the wrong branch at the equal hash and the second key was never found
(a new node at every request: never limited).
--- http_config
    ratelimit_zone rl key=$arg_k size=1m rate=1r/m;
--- config
    location = /ok { return 200 "ok\n"; }
    location /t {
        ratelimit rl;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
    }
    location = /status { resilience_status prometheus; }
--- request eval
["GET /t?k=k29685295", "GET /t?k=k32060020", "GET /t?k=k32060020",
 "GET /t?k=k29685295", "GET /status"]
--- error_code eval
[200, 200, 429, 429, 200]
--- response_body_like eval
[".*", ".*", ".*", ".*",
 qr/nginx_resilience_ratelimit_keys\{zone="rl"\} 2\n/]
--- no_error_log
[alert]
[crit]
