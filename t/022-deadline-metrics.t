# ngx_http_deadline_module's metrics, at resilience_status: requests by
# the source of their budget, failed fast, cut during the upstream, and the
# histogram of the budget left when the upstream answered.  Two workers
# (one process under valgrind): the counts are exact only if the zone is
# shared.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(slow_server);

repeat_each(1);
no_shuffle();
no_long_string();
master_on();
workers(2);
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_SLOW_PORT} = free_port();

$ENV{TEST_NGINX_ECHO} = <<'_EOC_';
    location /echo {
        return 200 "ok\n";
    }
    location = /metrics {
        resilience_status prometheus;
    }
    location = /metrics.json {
        resilience_status json;
    }
_EOC_

our $Requests = 'nginx_resilience_deadline_requests_total';
our $Left = 'nginx_resilience_deadline_budget_left_ms';

# the histogram's lines for cumulative counts at 5, 10, ... 10000, +Inf
sub buckets {
    my @le = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, '+Inf');
    return join '', map {
        "\Q$Left\E_bucket\\{le=\"\Q$le[$_]\E\"\\} $_[$_]\\n"
    } 0 .. $#le;
}

run_tests();

__DATA__

=== TEST 1: requests are counted by the source of their budget
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 3s;
        deadline_from grpc-timeout grpc;
        deadline_from x-budget-ms ms trusted=$http_x_internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
[("GET /t") x 7, "GET /metrics"]
--- more_headers eval
["grpc-timeout: 5S",
 "grpc-timeout: 5S",
 "grpc-timeout: 100m\nx-budget-ms: 90",
 "x-budget-ms: 800\nx-internal: 1",
 "grpc-timeout: 5S\nx-budget-ms: 800\nx-internal: 1",
 "",
 "grpc-timeout: soon",
 ""]
--- response_body_like eval
[(qr/\Aok\n\z/) x 7,
 qr/^# TYPE \Q$::Requests\E counter
\Q$::Requests\E\{source="default"\} 2
\Q$::Requests\E\{source="grpc-timeout"\} 3
\Q$::Requests\E\{source="x-budget-ms"\} 2
\Q$::Requests\E\{source="other"\} 0
/m]
--- no_error_log
[error]



=== TEST 2: failing fast is counted, HTTP and gRPC, and has no histogram entry
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from grpc-timeout grpc;
        deadline_min 50ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /t", "POST /t\nxxxx", "GET /t", "GET /metrics"]
--- more_headers eval
["grpc-timeout: 0m",
 "grpc-timeout: 20m",
 "grpc-timeout: 0m\nContent-Type: application/grpc",
 "grpc-timeout: 5S",
 ""]
--- error_code eval
[504, 504, 200, 200, 200]
--- response_body_like eval
[qr/504/, qr/504/, qr/\A\z/, qr/\Aok\n\z/,
 qr/\Q$::Requests\E\{source="grpc-timeout"\} 4
.*^nginx_resilience_deadline_failed_fast_total 3
.*^nginx_resilience_deadline_cut_total 0
.*^\Q$::Left\E_count 1$/ms]
--- no_error_log
[error]



=== TEST 3: the budget left when the upstream answered, in cumulative buckets
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 3s;
        deadline_from grpc-timeout grpc;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
[("GET /t") x 4, "GET /metrics"]
--- more_headers eval
["grpc-timeout: 1S", "", "grpc-timeout: 9S", "grpc-timeout: 60S", ""]
--- response_body_like eval
# left: (500, 1000], (2500, 3000], (5000, 9000], over 10000; sum <= 73000
[(qr/\Aok\n\z/) x 4,
 qr/^# TYPE \Q$::Left\E histogram
${\ main::buckets(0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4)}\Q$::Left\E_sum (7[0-2]\d\d\d|73000)
\Q$::Left\E_count 4
/m]
--- no_error_log
[error]



=== TEST 4: an upstream cut at the deadline is counted, and never answered
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 300ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW_PORT/;
        proxy_read_timeout 10s;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 3, 6);
--- request eval
["GET /t", "GET /metrics"]
--- error_code eval
[504, 200]
--- response_body_like eval
[qr/504/,
 qr/\Q$::Requests\E\{source="default"\} 1
.*^nginx_resilience_deadline_failed_fast_total 0
.*^nginx_resilience_deadline_cut_total 1
.*^\Q$::Left\E_count 0$/ms]
--- timeout: 3
--- no_error_log
[alert]
[crit]



=== TEST 5: the same metrics as JSON; a histogram's buckets are cumulative
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 3s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /metrics.json"]
--- response_body_like eval
[qr/\Aok\n\z/,
 qr/"\Q$::Requests\E":\{"type":"counter","help":"(?:[^"\\]|\\.)*","samples":\[\{"labels":\{"source":"default"\},"value":1\},\{"labels":\{"source":"other"\},"value":0\}\]\}.*"\Q$::Left\E":\{"type":"histogram","help":"Budget left \(ms\) when the upstream's response header arrived\.","samples":\[\{"labels":\{\},"buckets":\{"5":0,"10":0,"25":0,"50":0,"100":0,"250":0,"500":0,"1000":0,"2500":0,"5000":1,"10000":1,"\+Inf":1\},"sum":(2[5-9]\d\d|3000),"count":1\}\]\}/]
--- no_error_log
[error]



=== TEST 6: a request keeps its deadline through error_page, counted once
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 3s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/missing;
        proxy_intercept_errors on;
        error_page 404 = @fallback;
    }
    location @fallback {
        deadline 10s;
        rewrite ^ /echo break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
        add_header X-Left $deadline_remaining_ms always;
    }
    location /missing {
        return 404;
    }
--- request eval
["GET /t", "GET /metrics"]
--- response_headers_like eval
["X-Left: (2\\d\\d\\d|3000)", ""]
--- response_body_like eval
[qr/\Aok\n\z/,
 qr/\Q$::Requests\E\{source="default"\} 1\n.*^\Q$::Left\E_count 1$/ms]
--- no_error_log
[error]



=== TEST 7: a header name longer than 64 bytes is counted as "other"
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline_from x-a-header-name-long-enough-to-be-counted-among-the-other-sources ms;
        deadline_from x-short ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["x-a-header-name-long-enough-to-be-counted-among-the-other-sources: 900",
 "x-short: 900", ""]
--- response_body_like eval
[qr/\Aok\n\z/, qr/\Aok\n\z/,
 qr/^\Q$::Requests\E\{source="default"\} 0
\Q$::Requests\E\{source="x-short"\} 1
\Q$::Requests\E\{source="other"\} 1
/m]
--- no_error_log
[error]



=== TEST 8: the Prometheus text is well-formed, with the other modules' families
--- http_config
    breaker_zone breakers 1m;
    resilience_test_metric test_gauge 'quote" back\\slash';
--- config
    $TEST_NGINX_ECHO
    location /t {
        deadline 3s;
        deadline_from grpc-timeout grpc;
        breaker orders zone=breakers;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
--- request eval
["GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["grpc-timeout: 900m", "", ""]
--- response_body_like eval
my $name = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $value = qr/"(?:[^"\\\n]|\\[\\"n])*"/;
my $label = qr/[a-zA-Z_][a-zA-Z0-9_]*=$value/;
my $labels = qr/\{$label(?:,$label)*\}/;
my $num = qr/-?(?:\d+(?:\.\d+)?|\+Inf|NaN)/;
# a counter or gauge family: HELP, TYPE, then samples of that name
my $plain = qr/# HELP ($name) [^\n]*\n# TYPE \g{-1} (?:counter|gauge)\n(?:\g{-1}$labels? $num\n)*/;
# a histogram: per sample, _bucket lines ending at le="+Inf", _sum, _count
my $hist = qr/# HELP ($name) [^\n]*\n# TYPE \g{-1} histogram\n(?:(?:\g{-1}_bucket\{(?:$label,)*le="[^"+]+"\} $num\n)*\g{-1}_bucket\{(?:$label,)*le="\+Inf"\} $num\n\g{-1}_sum$labels? $num\n\g{-1}_count$labels? $num\n)*/;
[qr/\Aok\n\z/, qr/\Aok\n\z/,
 qr/\A(?=.*^# TYPE \Q$::Left\E histogram$)(?=.*^nginx_resilience_breaker_state)(?=.*^nginx_resilience_test_gauge)(?:$plain|$hist)+\z/ms]
--- no_error_log
[error]
