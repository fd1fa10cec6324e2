# ngx_http_upstream_discovery_module as a drop-in for nginx's own balancer:
# HTTPS upstreams (SSL sessions per peer), "zone" and other balancing
# methods in the same upstream, $upstream_addr per try, max_fails within
# fail_timeout, max_conns, duplicate server lines; probes apart from live
# traffic, deadline cuts and client aborts not counted, panic per tier; a
# discovery document with a NUL, a discovery-only upstream; HTTPS checks.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(http_get);
use NR::Html qw(put_file result);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(A B C TLS SLOW SLOW2 SLOW3 SLOW4 SLOW5);

# the bodies of GET $path for each path given, joined
sub bodies {
    my $s = '';
    for my $path (@_) {
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

# a certificate for the TLS backend, made now
my $certs = "/tmp/nr-upstream-certs-$ENV{TEST_NGINX_SERVER_PORT}";
mkdir $certs;
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
       . "-keyout $certs/key.pem -out $certs/cert.pem >/dev/null 2>&1") == 0
    or die "openssl req failed";
$ENV{TEST_NGINX_CERTS} = $certs;

$ENV{TEST_NGINX_BACKENDS} = <<"_EOC_";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        location / { return 200 "A\\n"; }
        location /fail { return 502; }
        location /healthz { return 503; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_B_PORT};
        location / { return 200 "B\\n"; }
        location /fail { return 200 "B\\n"; }
        location /healthz { return 200; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_C_PORT};
        location / { return 200 "C\\n"; }
        location /fail { return 200 "C\\n"; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_TLS_PORT} ssl;
        ssl_certificate $ENV{TEST_NGINX_CERTS}/cert.pem;
        ssl_certificate_key $ENV{TEST_NGINX_CERTS}/key.pem;
        location / { return 200 "tls \$ssl_session_reused\\n"; }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: an HTTPS upstream with health_check: served, the SSL session reused on the next request
--- http_config
    $TEST_NGINX_BACKENDS
    upstream tls {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_TLS_PORT;
    }
--- config
    location / {
        proxy_pass https://tls;
    }
--- request eval
["GET /", "GET /", "GET /"]
--- response_body eval
["tls .\n", "tls r\n", "tls r\n"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: zone in the same upstream: nginx starts, both peers serve
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        zone app 64k;
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
--- request eval
["GET /", "GET /", "GET /", "GET /"]
--- response_body eval
["A\n", "B\n", "A\n", "B\n"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: zone after discovery, with keepalive after both
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_CERTS/none.json interval=10s;
        zone app 64k;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        keepalive 4;
    }
--- config
    location / {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
--- request eval
["GET /", "GET /"]
--- response_body eval
["A\n", "A\n"]
--- no_error_log
[alert]
[crit]



=== TEST 4: least_conn after health_check is refused, naming both
--- http_config
    upstream app {
        health_check;
        server 127.0.0.1:1;
        least_conn;
    }
--- config
--- must_die
--- error_log
upstream "app": a balancing method ("hash", "ip_hash", "least_conn", "random") after "health_check" replaces it



=== TEST 5: hash after discovery is refused, naming both
--- http_config
    upstream app {
        discovery file=/tmp/nr-none.json;
        server 127.0.0.1:1;
        hash $uri consistent;
    }
--- config
--- must_die
--- error_log
upstream "app": a balancing method ("hash", "ip_hash", "least_conn", "random") after "discovery" replaces it



=== TEST 6: random before health_check is refused, naming both
--- http_config
    upstream app {
        random;
        server 127.0.0.1:1;
        health_check;
    }
--- config
--- must_die
--- error_log
"health_check" directive cannot follow a balancing method ("hash", "ip_hash", "least_conn", "random") nor "keepalive"



=== TEST 7: ip_hash and keepalive after health_check: refused, not silently replaced
--- http_config
    upstream app {
        health_check;
        server 127.0.0.1:1;
        ip_hash;
        keepalive 2;
    }
--- config
--- must_die
--- error_log
after "health_check" replaces it



=== TEST 8: $upstream_addr names each try's own peer
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / {
        proxy_pass http://app;
        proxy_next_upstream error timeout http_502;
        add_header X-Addr $upstream_addr always;
        add_header X-Status $upstream_status always;
    }
--- request
GET /fail
--- response_headers eval
"X-Addr: 127.0.0.1:$ENV{TEST_NGINX_A_PORT}, 127.0.0.1:$ENV{TEST_NGINX_B_PORT}
X-Status: 502, 200"

--- response_body
B
--- no_error_log
[alert]
[crit]



=== TEST 9: max_fails counts failures within fail_timeout, successes between them included, as round robin does
The same requests go to "stock" (round robin) and to "app" (health
checked): A fails /fail, answers /; failures interleaved with successes
take it out as they do with round robin.
--- http_config
    $TEST_NGINX_BACKENDS
    upstream stock {
        server 127.0.0.1:$TEST_NGINX_A_PORT max_fails=3 fail_timeout=10s;
        server 127.0.0.1:$TEST_NGINX_B_PORT max_fails=3 fail_timeout=10s;
    }
    upstream app {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT max_fails=3 fail_timeout=10s;
        server 127.0.0.1:$TEST_NGINX_B_PORT max_fails=3 fail_timeout=10s;
    }
--- config
    proxy_next_upstream error timeout http_502;
    location /stock/ { proxy_pass http://stock/; }
    location /app/ { proxy_pass http://app/; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my @paths = map { ($_ % 3 == 0) ? "fail" : "" } 0 .. 23;
my $stock = main::bodies(map { "/stock/$_" } @paths);
my $app = main::bodies(map { "/app/$_" } @paths);
main::result("stock $stock\napp   $app\n");
--- request
GET /result
--- response_body
stock BBABABBBABABBBBBBBBBBBBB
app   BBABABBBABABBBBBBBBBBBBB
--- no_error_log
[alert]
[crit]



=== TEST 10: max_conns is honoured: with the primary at its limit, the backup serves
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_SLOW_PORT max_conns=1;
        server 127.0.0.1:$TEST_NGINX_B_PORT backup;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 1.5, 4);
NR::Net::hold_request($ENV{TEST_NGINX_SERVER_PORT}, "/", 2);
Time::HiRes::sleep(0.3);
main::result(main::bodies("/", "/", "/") . "\n");
--- request
GET /result
--- response_body
BBB
--- timeout: 6
--- no_error_log
[error]
[alert]



=== TEST 11: duplicate server lines are separate peers
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
--- request eval
["GET /", "GET /", "GET /", "GET /", "GET /", "GET /"]
--- response_body eval
["A\n", "A\n", "B\n", "A\n", "A\n", "B\n"]
--- no_error_log
[error]
[alert]



=== TEST 12: a failing probe takes a peer out while it serves traffic
A answers every request but 503 on /healthz; requests keep flowing while
the probes fail.
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=200ms fails=2 passes=1;
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
my $end = Time::HiRes::time() + 2;
main::bodies("/") while Time::HiRes::time() < $end;
main::result(main::peer_state("127.0.0.1:$ENV{TEST_NGINX_A_PORT}") . " "
             . main::bodies("/", "/", "/", "/") . "\n");
--- request
GET /result
--- response_body
down BBBB
--- timeout: 6
--- error_log
is down (was up)
--- no_error_log
[alert]



=== TEST 13: tries the deadline cut do not count against the peers
Six requests with a 50 ms budget to peers that answer in 500 ms are cut
(504); the peers stay in, and a request without a budget is served.
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=tcp interval=10s;
        health_check_panic off;
        server 127.0.0.1:$TEST_NGINX_SLOW3_PORT max_fails=2;
        server 127.0.0.1:$TEST_NGINX_SLOW2_PORT max_fails=2;
    }
--- config
    location / {
        deadline_from x-ms ms;
        proxy_pass http://app;
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW3_PORT}, 0.5, 6);
NR::Net::slow_server($ENV{TEST_NGINX_SLOW2_PORT}, 0.5, 6);
my $s = '';
for (1 .. 6) {
    my $sock = IO::Socket::INET->new("127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}");
    print $sock "GET / HTTP/1.0\r\nX-Ms: 50\r\n\r\n";
    local $/;
    my $r = <$sock>;
    $s .= $r =~ m{^HTTP/1.1 (\d+)} ? $1 : '?';
    $s .= ' ';
}
main::result($s . main::bodies("/", "/") . "\n");
--- request
GET /result
--- response_body
504 504 504 504 504 504 slowslow
--- timeout: 8
--- no_error_log
on live traffic
[alert]



=== TEST 14: panic per tier: with both primaries down, the live backup serves, not panic
One peer up of three is under health_check_panic 50%, but that one is
the backup: it serves.
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check uri=/healthz interval=200ms fails=1;
        health_check_panic 50%;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT backup;
    }
--- config
    location / {
        proxy_pass http://app;
        add_header X-Health $upstream_health always;
    }
--- init
Time::HiRes::sleep(0.6);
--- request eval
["GET /", "GET /", "GET /"]
--- response_body eval
["B\n", "B\n", "B\n"]
--- response_headers eval
["X-Health: degraded", "X-Health: degraded", "X-Health: degraded"]
--- no_error_log
[alert]
[crit]



=== TEST 15: a discovery document with a NUL in an address is rejected whole, with a log line
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_A_PORT}", "127.0.0.1:$ENV{TEST_NGINX_B_PORT}\\u0000x"]));
Time::HiRes::sleep(0.5);
main::result(main::bodies("/", "/", "/", "/") . "\n");
--- request
GET /result
--- response_body
AAAA
--- timeout: 5
--- error_log
a NUL (\u0000) in the document; the previous set stays
--- no_error_log
[alert]
[crit]



=== TEST 16: a discovery-only upstream needs no placeholder server line
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_B_PORT}"]));
Time::HiRes::sleep(0.5);
main::result(main::bodies("/", "/") . "\n");
--- request
GET /result
--- response_body
BB
--- timeout: 5
--- no_error_log
[alert]
[crit]



=== TEST 17: zone with a discovery-only upstream is refused, not a crash
--- http_config
    upstream app {
        zone app 64k;
        discovery file=/tmp/nr-none.json;
    }
--- config
--- must_die
--- error_log
upstream "app": "zone" with "discovery" needs at least one "server" line



=== TEST 18: HTTPS health checks: a TLS peer whose certificate verifies is up, a peer that fails the TLS handshake is down
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=https uri=/ interval=200ms timeout=5s fails=1
                     passes=1 sni=localhost
                     ssl_trusted_certificate=$TEST_NGINX_CERTS/cert.pem;
        server 127.0.0.1:$TEST_NGINX_TLS_PORT;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass https://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
# a TLS handshake is slow under valgrind: until both have been probed
my $t = Time::HiRes::time();
my $s = '';
while (Time::HiRes::time() - $t < 10) {
    Time::HiRes::sleep(0.3);
    $s = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_TLS_PORT}") . " "
         . main::peer_state("127.0.0.1:$ENV{TEST_NGINX_A_PORT}");
    last if $s eq 'up down';
}
main::result("$s\n");
--- request
GET /result
--- response_body
up down
--- timeout: 15
--- error_log
TLS handshake failed
--- no_error_log
[alert]
[crit]



=== TEST 19: HTTPS health checks: a certificate for another name fails the check
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=https uri=/ interval=200ms timeout=5s fails=1
                     passes=1 sni=api.example.com
                     ssl_trusted_certificate=$TEST_NGINX_CERTS/cert.pem;
        server 127.0.0.1:$TEST_NGINX_TLS_PORT;
    }
--- config
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $t = Time::HiRes::time();
my $s = '';
while (Time::HiRes::time() - $t < 10) {
    Time::HiRes::sleep(0.3);
    $s = main::peer_state("127.0.0.1:$ENV{TEST_NGINX_TLS_PORT}");
    last if $s eq 'down';
}
main::result("$s\n");
--- request
GET /result
--- response_body
down
--- timeout: 15
--- error_log
the certificate is not for the name
--- no_error_log
[alert]
[crit]



=== TEST 20: sni= without type=https is refused
--- http_config
    upstream app {
        health_check sni=api.example.com;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log
"health_check" "sni=" and "ssl_trusted_certificate=" go with "type=https"



=== TEST 21: clients that give up (499) do not count against the peers
Four clients close their connections while slow peers (max_fails=1)
think; the peers stay in, and a request that waits is served.
--- http_config
    upstream app {
        health_check type=tcp interval=10s;
        health_check_panic off;
        server 127.0.0.1:$TEST_NGINX_SLOW4_PORT max_fails=1;
        server 127.0.0.1:$TEST_NGINX_SLOW5_PORT max_fails=1;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW4_PORT}, 0.6, 6);
NR::Net::slow_server($ENV{TEST_NGINX_SLOW5_PORT}, 0.6, 6);
for (1 .. 4) {
    my $sock = IO::Socket::INET->new("127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}");
    print $sock "GET / HTTP/1.0\r\n\r\n";
    Time::HiRes::sleep(0.15);
    close $sock;
}
Time::HiRes::sleep(0.8);
main::result(main::bodies("/", "/") . "\n");
--- request
GET /result
--- response_body
slowslow
--- timeout: 8
--- error_log
client prematurely closed connection
--- no_error_log
on live traffic
[alert]
