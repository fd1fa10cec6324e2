# ngx_http_deadline_module across a reload: its zone keeps the counters,
# the sources keep their slots, and a header name the new configuration
# brings gets a slot of its own.

# a reload needs the master process, which valgrind mode turns off
BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP a reload needs master_process on, "
              . "valgrind mode runs without\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Net qw(http_get);
use NR::Nginx qw(reload_and_wait);

repeat_each(1);
no_shuffle();
no_long_string();
master_on();
workers(2);
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;

run_tests();

__DATA__

=== TEST 1: the counters survive a reload that adds a source
--- config
    location /echo {
        return 200 "ok\n";
    }
    location = /metrics {
        resilience_status prometheus;
    }
    location /t {
        deadline 3s;
        deadline_from grpc-timeout grpc;
        # (x-new)
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
for my $h ('grpc-timeout: 5S', 'grpc-timeout: 5S', 'grpc-timeout: 0m', '') {
    NR::Net::http_get($port, '/t', $h eq '' ? () : $h);
}
# the same configuration, with one more source
my $conf = $Test::Nginx::Util::ConfFile;
open my $in, '<', $conf or die "$conf: $!";
my $text = do { local $/; <$in> };
close $in;
$text =~ s/# \(x-new\)/deadline_from x-new ms;/ or die "no marker in $conf";
open my $out, '>', $conf or die "$conf: $!";
print $out $text;
close $out;
NR::Nginx::reload_and_wait($Test::Nginx::Util::PidFile);
--- request eval
["GET /t", "GET /metrics"]
--- more_headers eval
["x-new: 700", ""]
--- response_body_like eval
[qr/\Aok\n\z/,
 qr/^nginx_resilience_deadline_requests_total\{source="default"\} 1
nginx_resilience_deadline_requests_total\{source="grpc-timeout"\} 3
nginx_resilience_deadline_requests_total\{source="x-new"\} 1
nginx_resilience_deadline_requests_total\{source="other"\} 0
.*^nginx_resilience_deadline_failed_fast_total 1
.*^nginx_resilience_deadline_budget_left_ms_bucket\{le="1000"\} 1
.*^nginx_resilience_deadline_budget_left_ms_count 4$/ms]
--- no_error_log
[alert]
[emerg]
