# One probe per peer per interval across all workers: four workers probe
# a peer every 500 ms, and the peer sees one probe per interval, not four.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(http_get);
use Time::HiRes qw(sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
master_on();
workers(4);
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{TEST_NGINX_PEER_PORT} = free_port();

run_tests();

__DATA__

=== TEST 1: four workers, one probe per interval: the peer counts them
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_PEER_PORT;
        access_log $TEST_NGINX_HTML_DIR/probes.log;
        location / { return 200 "ok\n"; }
    }
    upstream app {
        health_check uri=/healthz interval=500ms;
        server 127.0.0.1:$TEST_NGINX_PEER_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
Time::HiRes::sleep(2.2);
open my $fh, '<', "$Test::Nginx::Util::HtmlDir/probes.log" or die $!;
my $n = grep { m{GET /healthz} } <$fh>;
close $fh;
# 2.2 s at one per 500 ms: 4 or 5 (four workers each probing would be 16+)
open $fh, '>', "$Test::Nginx::Util::HtmlDir/result.txt" or die $!;
print $fh ($n >= 4 && $n <= 6 ? "one per interval" : "$n probes"), "\n";
close $fh;
--- request
GET /result
--- response_body
one per interval
--- timeout: 5
--- no_error_log
[alert]
[error]
