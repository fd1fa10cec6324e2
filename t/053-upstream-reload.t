# ngx_http_upstream_discovery_module across a reload: the peer table is in
# shared memory, so a peer that is down stays down and discovered peers stay.

BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP a reload needs master_process on, "
              . "valgrind mode runs without\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(http_get slow_server);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

repeat_each(1);
no_shuffle();
no_root_location();
master_on();
workers(1);
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{TEST_NGINX_A_PORT} = free_port();
$ENV{TEST_NGINX_CLOSED_PORT} = free_port();
$ENV{TEST_NGINX_SLOW_PORT} = free_port();
$ENV{TEST_NGINX_DNS_PORT} = free_port();

# a DNS server that never answers: a UDP socket nobody reads
our $Mute = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$ENV{TEST_NGINX_DNS_PORT}",
                                  Proto => 'udp')
    or die "udp $ENV{TEST_NGINX_DNS_PORT}: $!";

run_tests();

__DATA__

=== TEST 1: reload keeps a peer that probes found down, down
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_A_PORT;
        location / { return 200 "A\n"; }
    }
    upstream app {
        health_check type=tcp interval=30s fails=1;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
--- init
Time::HiRes::sleep(0.5);
my $pidfile = "$Test::Nginx::Util::ServRoot/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid;
Time::HiRes::sleep(1.5);
--- request
GET /status
--- response_body_like eval
qr/peer="127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT}",source="static",state="down"\} 1\n/
--- error_log
reconfiguring
--- no_error_log
[alert]



=== TEST 2: a reload does not wait for probes and blocking Consul queries under way
--- http_config
    upstream app {
        health_check interval=200ms timeout=20s;
        discovery consul=http://127.0.0.1:$TEST_NGINX_SLOW_PORT/v1/health/service/app
                  interval=30s;
        server 127.0.0.1:$TEST_NGINX_SLOW_PORT;
    }
--- config
    location / { return 200 "$pid\n"; }
--- init
# a server that answers after 20 s: probes and the Consul query hang
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 20, 25);
Time::HiRes::sleep(0.6);
my (undef, $old) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/");
chomp $old;
my $pidfile = "$Test::Nginx::Util::ServRoot/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid;
my $gone = 0;
for (1 .. 30) {
    Time::HiRes::sleep(0.1);
    if (!kill(0, $old) || `cat /proc/$old/stat 2>/dev/null` =~ /^\d+ \(.*\) Z/) {
        $gone = 1;
        last;
    }
}
die "the old worker $old is still there 3 s after the reload" unless $gone;
--- request
GET /
--- response_body_like
^\d+$
--- error_log
reconfiguring
--- no_error_log
[alert]
open socket


=== TEST 3: a reload does not wait for a DNS query under way
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resolver_timeout 20s;
    upstream app {
        discovery dns=svc.test:80 interval=30s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { return 200 "$pid\n"; }
--- init
Time::HiRes::sleep(0.6);
my (undef, $old) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/");
chomp $old;
my $pidfile = "$Test::Nginx::Util::ServRoot/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid;
my $gone = 0;
for (1 .. 30) {
    Time::HiRes::sleep(0.1);
    if (!kill(0, $old) || `cat /proc/$old/stat 2>/dev/null` =~ /^\d+ \(.*\) Z/) {
        $gone = 1;
        last;
    }
}
die "the old worker $old is still there 3 s after the reload" unless $gone;
--- request
GET /
--- response_body_like
^\d+$
--- error_log
reconfiguring
--- no_error_log
[alert]
