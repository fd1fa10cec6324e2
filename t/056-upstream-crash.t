# ngx_http_upstream_discovery_module: requests in flight of a worker that
# dies (SIGKILL here, a crash alike) are taken off their peers when the
# master starts its successor, so a drained peer is freed and least_conn
# is not skewed for ever; a reload, whose old workers still serve their
# requests, releases nothing.

BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP killing and respawning workers needs "
              . "master_process on, valgrind mode runs without\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(put_file);
use NR::Redis qw(free_port);
use NR::Net qw(http_get);
use NR::Nginx;
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
master_on();
workers(2);
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(C CLOSED SLOW SLOW2 SLOW3 SLOW4);


# the peer's in-flight gauge and state, "none" when it is not listed
sub peer {
    my ($peer) = @_;
    my (undef, $m) = http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
    my ($n) = $m =~ /^nginx_resilience_upstream_peer_inflight\{[^}]*peer="\Q$peer\E"[^}]*\} (\S+)$/m;
    my ($state) = $m =~ /^nginx_resilience_upstream_peer_state\{[^}]*peer="\Q$peer\E"[^}]*state="(\w+)"\} 1$/m;
    return ($n // 'none') . " " . ($state // 'none');
}

# a client holding GET / open in the background
sub request_in_background {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my ($st) = http_get($ENV{TEST_NGINX_SERVER_PORT}, "/");
        put_file("background.txt", "$st\n");
        POSIX::_exit(0);
    }
    return $pid;
}

# waits until the master has $n live workers again
sub wait_workers {
    my ($master, $n, @old) = @_;
    my %old = map { $_ => 1 } @old;
    for (1 .. 50) {
        my @new = grep { !$old{$_} } NR::Nginx::children($master);
        return if @new >= $n;
        Time::HiRes::sleep(0.1);
    }
    die "no new workers";
}

our $Upstream = <<"_EOC_";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_C_PORT};
        location / { return 200 "C\\n"; }
    }
    upstream app {
        discovery file=$ENV{TEST_NGINX_HTML_DIR}/peers.json interval=100ms grace=0;
        server 127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT} down;   # nginx wants one
    }
_EOC_

$ENV{TEST_NGINX_UPSTREAM} = $Upstream;

run_tests();

__DATA__

=== TEST 1: the workers are killed with a request in flight: their successors release it, the removed peer is then freed
--- http_config
    $TEST_NGINX_UPSTREAM
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $slow = "127.0.0.1:$ENV{TEST_NGINX_SLOW_PORT}";
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 3, 6);
main::put_file("peers.json", qq(["$slow"]));
Time::HiRes::sleep(0.4);
my $client = main::request_in_background();
Time::HiRes::sleep(0.4);
my $before = main::peer($slow);
my $master = NR::Nginx::master_pid($Test::Nginx::Util::PidFile);
my @old = NR::Nginx::children($master);
kill 'KILL', @old;
main::wait_workers($master, 2, @old);
Time::HiRes::sleep(0.3);
my $after = main::peer($slow);
main::put_file("peers.json", qq(["127.0.0.1:$ENV{TEST_NGINX_C_PORT}"]));
Time::HiRes::sleep(0.5);
my $gone = main::peer($slow);
waitpid($client, 0);
main::put_file("result.txt", "$before | $after | $gone\n");
--- request
GET /result
--- response_body
1 up | 0 up | none none
--- timeout: 8
--- error_log eval
qr/upstream "app": 1 request\(s\) in flight on peer 127\.0\.0\.1:\d+ released, their worker process \d+ has exited/
--- no_error_log
[crit]


=== TEST 2: a reload releases nothing: the old worker still serves its request, which then ends the count
--- http_config
    $TEST_NGINX_UPSTREAM
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $slow = "127.0.0.1:$ENV{TEST_NGINX_SLOW2_PORT}";
NR::Net::slow_server($ENV{TEST_NGINX_SLOW2_PORT}, 2, 5);
main::put_file("peers.json", qq(["$slow"]));
Time::HiRes::sleep(0.4);
my $client = main::request_in_background();
Time::HiRes::sleep(0.4);
my $before = main::peer($slow);
my $master = NR::Nginx::master_pid($Test::Nginx::Util::PidFile);
my @old = NR::Nginx::children($master);
kill 'HUP', $master;
main::wait_workers($master, 2, @old);
Time::HiRes::sleep(0.3);
my $during = main::peer($slow);
waitpid($client, 0);
open my $fh, '<', "$Test::Nginx::Util::HtmlDir/background.txt" or die;
chomp(my $st = <$fh>);
Time::HiRes::sleep(0.2);
my $after = main::peer($slow);
main::put_file("result.txt", "$before | $during | $st | $after\n");
--- request
GET /result
--- response_body
1 up | 1 up | 200 | 0 up
--- timeout: 8
--- no_error_log
released
[alert]
[crit]


=== TEST 3: a worker killed while it shuts down after a reload (not replaced): the new workers release its counts within a second or so
--- http_config
    $TEST_NGINX_UPSTREAM
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $slow = "127.0.0.1:$ENV{TEST_NGINX_SLOW3_PORT}";
NR::Net::slow_server($ENV{TEST_NGINX_SLOW3_PORT}, 4, 7);
main::put_file("peers.json", qq(["$slow"]));
Time::HiRes::sleep(0.4);
my $client = main::request_in_background();
Time::HiRes::sleep(0.4);
my $before = main::peer($slow);
my $master = NR::Nginx::master_pid($Test::Nginx::Util::PidFile);
my @old = NR::Nginx::children($master);
kill 'HUP', $master;
main::wait_workers($master, 2, @old);
# the old worker with the request still lives; kill it
my @left = grep { kill 0, $_ } @old;
kill 'KILL', @left;
Time::HiRes::sleep(1.6);
my $after = main::peer($slow);
waitpid($client, 0);
main::put_file("result.txt", "$before | " . (@left ? "killed" : "none left")
                             . " | $after\n");
--- request
GET /result
--- response_body
1 up | killed | 0 up
--- timeout: 10
--- error_log eval
qr/upstream "app": 1 request\(s\) in flight on peer 127\.0\.0\.1:\d+ released, their worker process \d+ has exited/
--- no_error_log
[crit]


=== TEST 4: a worker killed mid-probe: the lease it held on a peer that then drains is taken over, the peer leaves
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_C_PORT;
        location / { return 200 "C\n"; }
    }
    upstream app {
        health_check uri=/ interval=200ms timeout=5s passes=1;
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=0;
        server 127.0.0.1:$TEST_NGINX_C_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $slow = "127.0.0.1:$ENV{TEST_NGINX_SLOW4_PORT}";
NR::Net::slow_server($ENV{TEST_NGINX_SLOW4_PORT}, 4, 8);
main::put_file("peers.json", qq(["$slow"]));
Time::HiRes::sleep(0.6);
my (undef, $before) = split / /, main::peer($slow);
my $master = NR::Nginx::master_pid($Test::Nginx::Util::PidFile);
my @old = NR::Nginx::children($master);
kill 'KILL', @old;
main::wait_workers($master, 2, @old);
main::put_file("peers.json", qq([]));
Time::HiRes::sleep(1);
my (undef, $after) = split / /, main::peer($slow);
main::put_file("result.txt", "$before $after\n");
--- request
GET /result
--- response_body
checking none
--- timeout: 10
--- error_log eval
qr/the probe of draining peer 127\.0\.0\.1:\d+ by worker process \d+ never ended, taken over/
--- no_error_log
[crit]
