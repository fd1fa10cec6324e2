# Discovery sources other than files: a Redis hash with a pub/sub notice,
# a Consul health endpoint (served here by a test location in Consul's
# format), and DNS (A and SRV records from a local dnsmasq).

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(put_file);
use NR::Redis qw(free_port redis_cli);
use NR::Net qw(http_get);
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(A B CLOSED DNS);
$ENV{TEST_NGINX_KEY} = "nr:t054:$$:peers";


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

sub wait_for {
    my ($path, $re) = @_;
    my $t = Time::HiRes::time();
    while (Time::HiRes::time() - $t < 5) {
        my $b = bodies($path, 2);
        return $b if $b =~ $re;
        Time::HiRes::sleep(0.1);
    }
    return bodies($path, 2);
}

# A answers "A", B answers "B"; B also listens on 127.0.0.2 for DNS
$ENV{TEST_NGINX_BACKENDS} = <<"_EOC_";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        location / { return 200 "A\\n"; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_B_PORT};
        listen 127.0.0.2:$ENV{TEST_NGINX_A_PORT};
        location / { return 200 "B\\n"; }
    }
_EOC_

our $Dnsmasq;

sub dnsmasq {
    my (@records) = @_;
    stop_dnsmasq();
    my $pid = fork();
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec "dnsmasq", "--port=$ENV{TEST_NGINX_DNS_PORT}",
             "--listen-address=127.0.0.1", "--bind-interfaces",
             "--no-resolv", "--no-hosts", "--keep-in-foreground",
             "--local-ttl=1", "--pid-file=", "--user=root",
             "--local=/test/",
             map { "--$_" } @records;
        exit 1;
    }
    $Dnsmasq = $pid;
    Time::HiRes::sleep(0.3);
}

sub stop_dnsmasq {
    if ($Dnsmasq) {
        kill 'TERM', $Dnsmasq;
        waitpid($Dnsmasq, 0);
        $Dnsmasq = undef;
    }
}

END { stop_dnsmasq() }

run_tests();

__DATA__

=== TEST 1: redis=: a hash of peers, fetched again at once on a notice
--- http_config
    $TEST_NGINX_BACKENDS
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
    upstream app {
        discovery redis=$TEST_NGINX_KEY interval=30s grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my ($port, $key) = ($ENV{TEST_NGINX_REDIS_PORT}, $ENV{TEST_NGINX_KEY});
NR::Redis::redis_cli($port, "DEL", $key);
NR::Redis::redis_cli($port, "HSET", $key, "127.0.0.1:$ENV{TEST_NGINX_A_PORT}", "1");
# the first fetch may have come before the HSET: a notice, once subscribed
for (1 .. 100) {
    last if NR::Redis::redis_cli($port, "PUBSUB", "NUMSUB", $key) =~ /^1\s*$/m;
    Time::HiRes::sleep(0.05);
}
NR::Redis::redis_cli($port, "PUBLISH", $key, "changed");
my $one = main::wait_for("/", qr/^AA$/);
NR::Redis::redis_cli($port, "HSET", $key, "127.0.0.1:$ENV{TEST_NGINX_B_PORT}", "1");
NR::Redis::redis_cli($port, "HDEL", $key, "127.0.0.1:$ENV{TEST_NGINX_A_PORT}");
my $t = Time::HiRes::time();
NR::Redis::redis_cli($port, "PUBLISH", $key, "changed");
my $two = main::wait_for("/", qr/^BB$/);
my $took = Time::HiRes::time() - $t;
main::put_file("result.txt", "$one $two " . ($took < 2 ? "at-once" : $took) . "\n");
--- request
GET /result
--- response_body
AA BB at-once
--- timeout: 10
--- error_log
discovery notice on
--- no_error_log
[alert]


=== TEST 2: consul=: the health API's passing entries, Service.Address or Node.Address, Weights.Passing
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery consul=http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v1/health/service/api
                  interval=1s grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
    location = /v1/health/service/api {
        default_type application/json;
        add_header X-Consul-Index 42;
        alias $TEST_NGINX_HTML_DIR/consul.json;
    }
    location = /seen {
        return 200 "$args\n";
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("consul.json", qq([
  {"Node": {"Address": "127.0.0.1"},
   "Service": {"Address": "", "Port": $ENV{TEST_NGINX_A_PORT},
               "Weights": {"Passing": 1, "Warning": 1}}}]));
my $one = main::wait_for("/", qr/^AA$/);
main::put_file("consul.json", qq([
  {"Node": {"Address": "10.255.255.1"},
   "Service": {"Address": "127.0.0.1", "Port": $ENV{TEST_NGINX_B_PORT},
               "Weights": {"Passing": 3, "Warning": 1}}}]));
my $two = main::wait_for("/", qr/^BB$/);
main::put_file("consul.json", "not json");
Time::HiRes::sleep(1.5);
my $three = main::bodies("/", 2);
main::put_file("result.txt", "$one $two $three\n");
--- request
GET /result
--- response_body
AA BB BB
--- timeout: 10
--- error_log
discovery from consul failed: not a JSON array of Consul service entries; the previous set stays
--- no_error_log
[alert]


=== TEST 3: consul=: blocking queries carry the last index and the wait
--- http_config
    upstream app {
        discovery consul=http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v1/health/service/api
                  interval=2s;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location = /v1/health/service/api {
        access_log $TEST_NGINX_HTML_DIR/consul.log;
        default_type application/json;
        add_header X-Consul-Index 42;
        return 200 "[]";
    }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
Time::HiRes::sleep(0.6);
open my $fh, '<', "$Test::Nginx::Util::HtmlDir/consul.log" or die $!;
my @q = map { m{"GET (\S+) HTTP/1.0"} ? $1 : () } <$fh>;
main::put_file("result.txt", "first=$q[0] then=$q[1]\n");
--- request
GET /result
--- response_body
first=/v1/health/service/api?passing&index=0&wait=2s then=/v1/health/service/api?passing&index=42&wait=2s
--- no_error_log
[alert]


=== TEST 4: dns=: A records through nginx's resolver, again at the TTL
--- http_config
    $TEST_NGINX_BACKENDS
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resolver_timeout 1s;
    upstream app {
        discovery dns=api.test:$TEST_NGINX_A_PORT interval=1s grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::dnsmasq("host-record=api.test,127.0.0.1");
my $one = main::wait_for("/", qr/^AA$/);
main::dnsmasq("host-record=api.test,127.0.0.2");
my $two = main::wait_for("/", qr/^BB$/);
main::stop_dnsmasq();
main::put_file("result.txt", "$one $two\n");
--- request
GET /result
--- response_body
AA BB
--- timeout: 12
--- no_error_log
[alert]


=== TEST 5: dns= service=: SRV records give the ports
--- http_config
    $TEST_NGINX_BACKENDS
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resolver_timeout 1s;
    upstream app {
        discovery dns=svc.test service=http interval=1s grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::dnsmasq("host-record=node.test,127.0.0.1",
              "srv-host=_http._tcp.svc.test,node.test,$ENV{TEST_NGINX_B_PORT},0,5");
my $one = main::wait_for("/", qr/^BB$/);
main::stop_dnsmasq();
main::put_file("result.txt", "$one\n");
--- request
GET /result
--- response_body
BB
--- timeout: 12
--- no_error_log
[alert]


=== TEST 6: redis=: a hash with a name instead of an address, or a bad weight, is rejected whole
--- http_config
    $TEST_NGINX_BACKENDS
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
    upstream app {
        discovery redis=$TEST_NGINX_KEY:bad interval=30s grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my ($port, $key) = ($ENV{TEST_NGINX_REDIS_PORT}, "$ENV{TEST_NGINX_KEY}:bad");
NR::Redis::redis_cli($port, "DEL", $key);
NR::Redis::redis_cli($port, "HSET", $key, "127.0.0.1:$ENV{TEST_NGINX_A_PORT}", "1");
for (1 .. 100) {
    last if NR::Redis::redis_cli($port, "PUBSUB", "NUMSUB", $key) =~ /^1\s*$/m;
    Time::HiRes::sleep(0.05);
}
NR::Redis::redis_cli($port, "PUBLISH", $key, "changed");
my $one = main::wait_for("/", qr/^AA$/);
NR::Redis::redis_cli($port, "HSET", $key, "example.com:80", "1");
NR::Redis::redis_cli($port, "PUBLISH", $key, "changed");
Time::HiRes::sleep(0.4);
my $two = main::bodies("/", 2);
NR::Redis::redis_cli($port, "HDEL", $key, "example.com:80");
NR::Redis::redis_cli($port, "HSET", $key, "127.0.0.1:$ENV{TEST_NGINX_B_PORT}", "0");
NR::Redis::redis_cli($port, "PUBLISH", $key, "changed");
Time::HiRes::sleep(0.4);
my $three = main::bodies("/", 2);
main::put_file("result.txt", "$one $two $three\n");
--- request
GET /result
--- response_body
AA AA AA
--- timeout: 10
--- error_log
discovery from redis failed: a field is not an IP address with a port; the previous set stays
discovery from redis failed: a weight is not a number from 1 to 1000; the previous set stays
--- no_error_log
[alert]


=== TEST 7: dns= service=: SRV priorities: the lowest priority serves, the others are backups
--- http_config
    $TEST_NGINX_BACKENDS
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resolver_timeout 1s;
    upstream app {
        discovery dns=svc.test service=http interval=1s grace=0;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::dnsmasq("host-record=node.test,127.0.0.1",
              "srv-host=_http._tcp.svc.test,node.test,$ENV{TEST_NGINX_B_PORT},0,5",
              "srv-host=_http._tcp.svc.test,node.test,$ENV{TEST_NGINX_A_PORT},10,5");
main::wait_for("/", qr/B/);
my $s = main::bodies("/", 6);
main::stop_dnsmasq();
main::put_file("result.txt", "$s\n");
--- request
GET /result
--- response_body
BBBBBB
--- timeout: 12
--- no_error_log
[alert]
