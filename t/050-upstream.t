# ngx_http_upstream_discovery_module: configured peers start up; active
# HTTP and TCP checks take peers down and back up (status, header and body
# matches); passive failures; panic mode; discovery from a file (traffic
# moves, malformed documents keep the old set, removed peers drain, the
# dump serves a start with the source down); resilience_admin; status.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(put_file result);
use NR::Redis qw(free_port);
use NR::Net qw(http_get http_put);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(A B C CLOSED SLOW);


# the bodies of $n requests to $path, joined
sub bodies {
    my ($path, $n) = @_;
    my $s = '';
    for (1 .. $n) {
        my ($st, $body) = http_get($ENV{TEST_NGINX_SERVER_PORT}, $path);
        chomp $body;
        $s .= $st == 200 ? $body : "[$st]";
    }
    return $s;
}

sub peer_state {
    my ($peer) = @_;
    my (undef, $m) = http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
    my ($state) = $m =~ /^nginx_resilience_upstream_peer_state\{[^}]*peer="\Q$peer\E"[^}]*state="(\w+)"\} 1$/m;
    return $state // 'none';
}

# the backends: A, B and C answer their letter; /healthz serves a file
# the test writes (absent: 404)
$ENV{TEST_NGINX_BACKENDS} = <<"_EOC_";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        location / { return 200 "A\\n"; }
        location = /healthz {
            default_type text/plain;
            alias $Test::Nginx::Util::HtmlDir/health-A.txt;
        }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_B_PORT};
        location / { return 200 "B\\n"; }
        location = /healthz {
            default_type text/plain;
            add_header X-Ready yes;
            alias $Test::Nginx::Util::HtmlDir/health-B.txt;
        }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_C_PORT};
        location / { return 200 "C\\n"; }
        location = /healthz { return 200 "ok\\n"; }
    }
_EOC_

# 60 seeds that nothing listens on (for a table that fills up)
$ENV{TEST_NGINX_SIXTY_SEEDS} = join "", map { "        server 127.0.2.1:$_;\n" }
                                      20001 .. 20060;

run_tests();

__DATA__

=== TEST 1: configured peers start up, smooth weighted round robin
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT weight=2;
    }
--- config
    location / { proxy_pass http://app; }
--- request eval
["GET /", "GET /", "GET /", "GET /", "GET /", "GET /"]
--- response_body eval
["B\n", "A\n", "B\n", "B\n", "A\n", "B\n"]
--- no_error_log
[error]
[alert]


=== TEST 2: a failing check takes a peer down, no request reaches it; passing checks bring it back
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=200ms fails=2 passes=2;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("health-A.txt", "ok\n");
main::put_file("health-B.txt", "ok\n");
Time::HiRes::sleep(0.5);
my $before = main::bodies("/", 4);
unlink "$Test::Nginx::Util::HtmlDir/health-B.txt";
Time::HiRes::sleep(0.8);
my $down = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_B_PORT}");
my $during = main::bodies("/", 4);
main::put_file("health-B.txt", "ok\n");
Time::HiRes::sleep(0.8);
my $up = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_B_PORT}");
my $after = main::bodies("/", 4);
main::result("$before $down $during $up "
             . ($after =~ /A/ && $after =~ /B/ ? "both" : $after) . "\n");
--- request
GET /result
--- response_body_like
^(ABAB|BABA) down AAAA up both$
--- timeout: 6
--- error_log
is down (was up): 2 probe(s) failed, the last: status not 2xx or 3xx
is up (was down): 2 probe(s) passed
--- no_error_log
[alert]


=== TEST 3: health_check_match: status, header and body rules
--- http_config
    $TEST_NGINX_BACKENDS
    health_check_match ready {
        status 200;
        header X-Ready = yes;
        body ~ "^ok";
    }
    upstream app {
        health_check uri=/healthz interval=200ms fails=1 passes=1 match=ready;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
# A: 200 "ok" but no X-Ready header; B: X-Ready, body "ok", then "bad"
main::put_file("health-A.txt", "ok\n");
main::put_file("health-B.txt", "ok\n");
Time::HiRes::sleep(0.6);
my $a = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_A_PORT}");
my $b = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_B_PORT}");
main::put_file("health-B.txt", "bad\n");
Time::HiRes::sleep(0.6);
my $b2 = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_B_PORT}");
main::result("A=$a B=$b then B=$b2\n");
--- request
GET /result
--- response_body
A=down B=up then B=down
--- timeout: 5
--- error_log
header not matched
body not matched
--- no_error_log
[alert]


=== TEST 4: TCP checks: a closed port goes down, an open one stays up
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=tcp interval=200ms fails=1;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
--- init
Time::HiRes::sleep(0.6);
--- request eval
["GET /status", "GET /", "GET /", "GET /"]
--- response_body_like eval
[qr/peer="127.0.0.1:$ENV{TEST_NGINX_A_PORT}",source="static",state="up"\} 1\n.*peer="127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}",source="static",state="down"\} 1\n/s,
 "^A\$", "^A\$", "^A\$"]
--- no_error_log
[alert]


=== TEST 5: passive checks: max_fails failures on live traffic take a peer out for fail_timeout before its next probe; its probe state is its own
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check interval=60s fails=3;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT max_fails=2;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
# one probe at start (one probe failure, of fails=3: still up), then live
# traffic: two failures, out for fail_timeout (10 s)
Time::HiRes::sleep(0.3);
my $s = main::bodies("/", 6);
main::result("$s " . main::peer_state("127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}") . "\n");
--- request
GET /result
--- response_body
AAAAAA up
--- error_log
failed 2 times on live traffic, out for 10000 ms
--- no_error_log
[alert]


=== TEST 6: panic: every peer down, requests still go to all of them rather than 502
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=200ms fails=1;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
    upstream strict {
        health_check uri=/healthz interval=200ms fails=1;
        health_check_panic off;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location /strict { proxy_pass http://strict; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
unlink "$Test::Nginx::Util::HtmlDir/health-A.txt";
unlink "$Test::Nginx::Util::HtmlDir/health-B.txt";
Time::HiRes::sleep(0.6);
main::result(main::bodies("/", 4) . " " . main::bodies("/strict", 2) . "\n");
--- request
GET /result
--- response_body_like
^(ABAB|BABA) \[502\]\[502\]$
--- timeout: 5
--- no_error_log
[alert]


=== TEST 7: discovery from a file: traffic moves when it is rewritten, with no 5xx
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=0;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", qq({"peers": [{"address": "127.0.0.1:$ENV{TEST_NGINX_B_PORT}", "weight": 1}]}));
Time::HiRes::sleep(0.4);
my $one = main::bodies("/", 4);
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_C_PORT}"]));
my $during = '';
my $t = Time::HiRes::time();
while (Time::HiRes::time() - $t < 0.6) { $during .= main::bodies("/", 1) }
my $two = main::bodies("/", 4);
main::result("$one $two " . ($during =~ /\[/ ? "errors:$during" : "no-errors")
             . " B=" . main::peer_state("127.0.0.1:$ENV{TEST_NGINX_B_PORT}") . "\n");
--- request
GET /result
--- response_body_like
^(ABAB|BABA) (ACAC|CACA) no-errors B=none$
--- timeout: 5
--- error_log
discovered, up
left discovery, draining
drained, removed
--- no_error_log
[alert]
no live peer


=== TEST 8: a malformed document is rejected whole, the previous set stays
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;   # nginx wants one
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_B_PORT}"]));
Time::HiRes::sleep(0.4);
my $one = main::bodies("/", 2);
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_C_PORT}", "example.com:80"]));
Time::HiRes::sleep(0.4);
my $two = main::bodies("/", 2);
main::put_file("peers.json", qq({"peers": [ "127.0.0.1:$ENV{TEST_NGINX_C_PORT}"));
Time::HiRes::sleep(0.4);
my $three = main::bodies("/", 2);
main::result("$one $two $three\n");
--- request
GET /result
--- response_body
BB BB BB
--- timeout: 5
--- error_log
"example.com:80" is not an IP address with a port; the previous set stays
not valid JSON; the previous set stays
--- no_error_log
[alert]


=== TEST 9: a removed peer drains: its request in flight completes, then it is freed
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;   # nginx wants one
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $slow = "127.0.0.1:$ENV{TEST_NGINX_SLOW_PORT}";
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 1, 4);
main::put_file("peers.json", qq(["$slow"]));
Time::HiRes::sleep(0.4);
my $pid = fork();
if ($pid == 0) {
    my ($st, $b) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/");
    chomp $b;
    main::put_file("inflight.txt", "$st $b");
    POSIX::_exit(0);
}
Time::HiRes::sleep(0.3);
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_C_PORT}"]));
Time::HiRes::sleep(0.3);
my $state = main::peer_state($slow);
my $after = main::bodies("/", 2);
waitpid($pid, 0);
open my $fh, '<', "$Test::Nginx::Util::HtmlDir/inflight.txt" or die;
my $inflight = <$fh>;
Time::HiRes::sleep(0.3);
main::result("$inflight $state $after " . main::peer_state($slow) . "\n");
--- request
GET /result
--- response_body
200 slow draining CC none
--- timeout: 6
--- no_error_log
[alert]


=== TEST 10: the dump: written after a change
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms
                  dump=/tmp/nr-t050.dump;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
--- init
unlink "/tmp/nr-t050.dump";
main::put_file("peers.json", qq([{"address": "127.0.0.1:$ENV{TEST_NGINX_B_PORT}", "weight": 3}]));
Time::HiRes::sleep(0.4);
--- request
GET /
--- response_body
B
--- no_error_log
[alert]
[crit]


=== TEST 11: a start with the source unreachable uses the dump
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/missing.json interval=100ms
                  dump=/tmp/nr-t050.dump;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
--- init
Time::HiRes::sleep(0.4);
--- request
GET /
--- response_body
B
--- error_log
the source is unreachable, using the dump "/tmp/nr-t050.dump" (1 peers)
--- no_error_log
[alert]


=== TEST 12: resilience_admin: drain, down and up a peer by hand
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location /admin/ { resilience_admin; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $b = "127.0.0.1:$ENV{TEST_NGINX_B_PORT}";
my ($st1, $body) = NR::Net::http_put($ENV{TEST_NGINX_SERVER_PORT}, "/admin/upstreams/app",
                                    qq({"peer": "$b", "state": "drain"}));
my $drained = main::bodies("/", 4);
my ($st2) = NR::Net::http_put($ENV{TEST_NGINX_SERVER_PORT}, "/admin/upstreams/app",
                             qq({"peer": "$b", "state": "up"}));
my $back = main::bodies("/", 4);
my ($st3) = NR::Net::http_put($ENV{TEST_NGINX_SERVER_PORT}, "/admin/upstreams/app",
                             qq({"peer": "10.9.9.9:1", "state": "down"}));
my ($st4) = NR::Net::http_put($ENV{TEST_NGINX_SERVER_PORT}, "/admin/upstreams/app",
                             qq({"peer": "$b", "state": "sideways"}));
main::result("$st1 " . ($body =~ /"admin":"drain"/ ? "shown" : $body)
             . " $drained $st2 " . ($back =~ /B/ ? "back" : $back) . " $st3 $st4\n");
--- request
GET /result
--- response_body
200 shown AAAA 200 back 404 400
--- no_error_log
[alert]


=== TEST 13: keepalive after health_check keeps connections to the peers
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        keepalive 8;
    }
--- config
    location / {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
--- request eval
["GET /", "GET /", "GET /"]
--- response_body eval
["A\n", "A\n", "A\n"]
--- no_error_log
[error]
[alert]


=== TEST 14: the status: every peer with its state, source, checks and counters
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=200ms;
        server 127.0.0.1:$TEST_NGINX_C_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
--- init
Time::HiRes::sleep(0.5);
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/") for 1 .. 3;
--- request
GET /status
--- response_body_like eval
qr/nginx_resilience_upstream_peer_state\{upstream="app",peer="127.0.0.1:$ENV{TEST_NGINX_C_PORT}",source="static",state="up"\}[ ]1\n.*
nginx_resilience_upstream_peer_fails\{upstream="app",peer="[^"]+",source="static"\}[ ]0\n.*
nginx_resilience_upstream_peer_last_check_ok\{[^}]+\}[ ]1\n.*
nginx_resilience_upstream_peer_requests_total\{[^}]+\}[ ]3\n.*
nginx_resilience_upstream_peer_probes_total\{[^}]+\}[ ][1-9]\d*\n/sx
--- no_error_log
[error]
[alert]


=== TEST 15: a discovered peer starts "checking" and joins after passes probes
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=1s passes=2;
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("health-A.txt", "ok\n");
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_C_PORT}"]));
my $c = "127.0.0.1:$ENV{TEST_NGINX_C_PORT}";
my $t = Time::HiRes::time();
my $first = main::peer_state($c);
$first = main::peer_state($c) while $first eq 'none' && Time::HiRes::time() - $t < 2;
my $during = main::bodies("/", 4);
# passes=2 at 1 s: up within about 2 s (more under valgrind)
my $later = main::peer_state($c);
$t = Time::HiRes::time();
while ($later ne 'up' && Time::HiRes::time() - $t < 6) {
    Time::HiRes::sleep(0.2);
    $later = main::peer_state($c);
}
my $after = main::bodies("/", 4);
main::result("$first $during $later " . ($after =~ /C/ ? "joined" : $after) . "\n");
--- request
GET /result
--- response_body
checking AAAA up joined
--- timeout: 12
--- no_error_log
[alert]


=== TEST 16: health_check_balance least_conn: a busy peer is skipped while another has fewer requests in flight
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check_balance least_conn;
        health_check interval=10s;
        server 127.0.0.1:$TEST_NGINX_SLOW_PORT;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 1.5, 4);
# the first request goes to the slow peer (a tie: the first) and stays
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/", 2);
Time::HiRes::sleep(0.3);
main::result(main::bodies("/", 4) . "\n");
--- request
GET /result
--- response_body
AAAA
--- timeout: 5
--- no_error_log
[alert]


=== TEST 17: grace: a peer gone from discovery that still passes its checks stays for the grace period
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=200ms passes=1;
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=1s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("health-A.txt", "ok\n");
my $c = "127.0.0.1:$ENV{TEST_NGINX_C_PORT}";
main::put_file("peers.json", qq(["$c"]));
my $t = Time::HiRes::time();
Time::HiRes::sleep(0.1) while main::peer_state($c) ne 'up' && Time::HiRes::time() - $t < 3;
main::put_file("peers.json", "[]");
Time::HiRes::sleep(0.4);
my $kept = main::peer_state($c) . " " . (main::bodies("/", 4) =~ /C/ ? "served" : "unused");
Time::HiRes::sleep(1.2);
my $gone = main::peer_state($c);
main::result("$kept $gone\n");
--- request
GET /result
--- response_body
up served none
--- timeout: 8
--- error_log
left discovery, draining
--- no_error_log
[alert]


=== TEST 18: hostile documents: each rejected whole with a reason, the set stays, no worker harmed
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_B_PORT}"]));
Time::HiRes::sleep(0.4);
my @hostile = (
    '["127.0.0.1:0"]',
    '["127.0.0.1:99999"]',
    '[{"address": 5}]',
    '[{"address": "127.0.0.1:80", "weight": 1e308}]',
    '[{"address": "127.0.0.1:80", "weight": -1}]',
    '[{"address": "127.0.0.1:80", "backup": "yes"}]',
    '{"peers": {"address": "127.0.0.1:80"}}',
    ("[" x 5000) . ("]" x 5000),
    '["' . ("1" x 100000) . '"]',
    "\x00\xff\xfe garbage",
    '[' . join(",", map { qq("127.0.0.1:$_") } 20000 .. 20070) . ']',
);
my $s = '';
for my $doc (@hostile) {
    main::put_file("peers.json", $doc);
    Time::HiRes::sleep(0.25);
    $s .= main::bodies("/", 1);
}
main::result("$s\n");
--- request
GET /result
--- response_body
BBBBBBBBBBB
--- timeout: 10
--- error_log
"127.0.0.1:0" is not an IP address with a port
a "weight" is not a number from 1 to 1000
a "backup" is not true or false
more than 64 peers
--- no_error_log
[alert]
[crit]
signal


=== TEST 19: without health_check, a peer failing max_fails times on live traffic is out for fail_timeout, as with round robin
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT max_fails=1 fail_timeout=1s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", "[]");
Time::HiRes::sleep(0.3);
# the closed peer fails once (the request goes on to A), then is skipped
my $s = main::bodies("/", 4);
my (undef, $m) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
my ($n) = $m =~ /^nginx_resilience_upstream_peer_requests_total\{[^}]*peer="127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}"[^}]*\} (\d+)/m;
Time::HiRes::sleep(1.2);
# back after fail_timeout: tried again (and fails again)
main::bodies("/", 2);
(undef, $m) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
my ($n2) = $m =~ /^nginx_resilience_upstream_peer_requests_total\{[^}]*peer="127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}"[^}]*\} (\d+)/m;
main::result("$s tried=$n then=" . ($n2 > $n ? "tried-again" : $n2) . "\n");
--- request
GET /result
--- response_body
AAAA tried=1 then=tried-again
--- timeout: 6
--- error_log
failed 1 times on live traffic, out for 1000 ms
--- no_error_log
[alert]


=== TEST 20: a table with no room left: the peers that do not fit are named in the warning, the others join
60 seeds and a document of 6 peers: 4 fit in the 64 slots.  The warning
names each peer left out as its address (the name was once unset memory).
--- http_config
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
$TEST_NGINX_SIXTY_SEEDS
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", '["127.0.3.1:80", "127.0.3.2:80", "127.0.3.3:80", "127.0.3.4:80", "127.0.3.5:80", "[::1]:8080"]');
Time::HiRes::sleep(0.5);
my (undef, $m) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
my $n = () = $m =~ /^nginx_resilience_upstream_peer_state\{[^}]*source="file"[^}]*\} 1$/mg;
main::result("discovered=$n\n");
--- request
GET /result
--- response_body
discovered=4
--- error_log
upstream "app": no room for peer "127.0.3.5:80", at most 64 peers
upstream "app": no room for peer "[::1]:8080", at most 64 peers
--- no_error_log
[alert]
[crit]


=== TEST 21: $upstream_health: healthy, degraded, panic, unavailable (also after error_page), and empty elsewhere
B fails its checks, A passes them.
--- http_config
    $TEST_NGINX_BACKENDS
    upstream ok {
        health_check uri=/healthz interval=100ms fails=1;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
    upstream deg {
        health_check uri=/healthz interval=100ms fails=1;
        health_check_panic off;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
    upstream pan {
        health_check uri=/healthz interval=100ms fails=1;
        health_check_panic 60%;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
    upstream none {
        health_check uri=/healthz interval=100ms fails=1;
        health_check_panic off;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    add_header X-Health "[$upstream_health]" always;
    location /ok { proxy_pass http://ok; }
    location /deg { proxy_pass http://deg; }
    location /pan { proxy_pass http://pan; }
    location /none { proxy_pass http://none; }
    location /plain { return 200 "plain\n"; }
    location /fallback {
        error_page 502 = @fallback;
        proxy_pass http://none;
    }
    location @fallback { return 503 "fallback\n"; }
--- init
main::put_file("health-A.txt", "ok\n");
unlink "$Test::Nginx::Util::HtmlDir/health-B.txt";
Time::HiRes::sleep(0.6);
--- request eval
["GET /ok", "GET /deg", "GET /pan", "GET /none", "GET /plain",
 "GET /fallback"]
--- error_code eval
[200, 200, 200, 502, 200, 503]
--- response_headers eval
["X-Health: [healthy]", "X-Health: [degraded]", "X-Health: [panic]",
 "X-Health: [unavailable]", "X-Health: []", "X-Health: [unavailable]"]
--- no_error_log
[alert]


=== TEST 22: health_check_slow_start: a peer back up starts with a small share and grows to its weight
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=100ms fails=1 passes=1;
        health_check_slow_start 4s;
        health_check_panic off;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $b = "127.0.0.1:$ENV{TEST_NGINX_B_PORT}";
main::put_file("health-A.txt", "ok\n");
unlink "$Test::Nginx::Util::HtmlDir/health-B.txt";
Time::HiRes::sleep(0.5);
my $down = main::peer_state($b);
main::put_file("health-B.txt", "ok\n");
for (1 .. 100) {
    last if main::peer_state($b) eq 'up';
    Time::HiRes::sleep(0.02);
}
# just back: B's weight is a few hundredths of A's
my $early = () = main::bodies("/", 20) =~ /B/g;
Time::HiRes::sleep(4.3);
# the slow start over: equal weights, one in two
my $late = () = main::bodies("/", 20) =~ /B/g;
main::result("$down early=" . ($early <= 6 ? "few" : $early)
             . " late=" . ($late >= 9 && $late <= 11 ? "half" : $late) . "\n");
--- request
GET /result
--- response_body
down early=few late=half
--- timeout: 12
--- no_error_log
[alert]


=== TEST 23: kept-alive connections: a timeout on one is the peer's failure; one the peer had closed is not
The front keeps connections to the backend server of this same nginx,
which answers /fast at once and sends /slow on to a server that takes 2 s.
With proxy_read_timeout 300ms, /slow times out on a kept-alive
connection: twice is max_fails=2, the peer is out for fail_timeout.
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_C_PORT;
        location /fast { return 200 "fast\n"; }
        location /slow { proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW_PORT; }
    }
    upstream app {
        health_check uri=/fast interval=10s fails=2;
        server 127.0.0.1:$TEST_NGINX_C_PORT max_fails=2;
        keepalive 4;
    }
--- config
    location / {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_read_timeout 300ms;
    }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 2, 4);
my $c = "127.0.0.1:$ENV{TEST_NGINX_C_PORT}";
my $s = main::bodies("/fast", 2);
my ($st1) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/slow");
my ($st2) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/slow");
main::result("$s $st1 $st2 " . main::peer_state($c) . "\n");
--- request
GET /result
--- response_body
fastfast 504 504 up
--- timeout: 8
--- error_log
failed 2 times on live traffic
--- no_error_log
[alert]
