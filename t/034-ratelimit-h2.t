# ngx_http_ratelimit_module over HTTP/2 (h2c, curl --http2-prior-knowledge):
# streams have no connection of their own in the worker's array, so their
# context comes from the request pool; limits, Retry-After and the headers
# work the same.  (curl 7.88 cannot reuse an h2c connection for a second
# request, whatever the server: one connection per request here.)

BEGIN {
    unshift @INC, 't/lib';
    require NR::Curl;
    my $why = NR::Curl::curl_http2_missing();
    if ($why) {
        print "1..0 # SKIP $why\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(result);
use NR::Redis qw(free_port);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_H2_PORT} = free_port();
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;


run_tests();

__DATA__

=== TEST 1: over h2c: passed, then rejected with Retry-After and the draft headers, an error_page keeping them
--- http_config
    ratelimit_zone h2 key=$arg_k size=1m rate=6r/m;
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location /t {
            ratelimit h2 burst=1 nodelay;
            ratelimit_headers draft;
            error_page 429 /busy;
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
        }
        location = /busy { return 429 "slow down\n"; }
    }
--- config
    location = /ok { return 200 "ok\n"; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $url = "http://127.0.0.1:$ENV{TEST_NGINX_H2_PORT}/t?k=a";
my @out = map {
    `curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code} [%header{retry-after}] [%header{ratelimit}]' '$url'`
} 1 .. 3;
main::result(join("\n", @out) . "\n");
--- request
GET /result
--- response_body
2 200 [] ["h2";r=1;t=10]
2 200 [] ["h2";r=0;t=20]
2 429 [10] ["h2";r=0;t=20]
--- no_error_log
[alert]
[crit]


=== TEST 2: twenty HTTP/2 requests at once: exactly the allowance passes
--- http_config
    ratelimit_zone h2 key=one size=1m rate=1r/m;
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location /t {
            ratelimit h2 burst=4 nodelay;
            proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/ok;
        }
    }
--- config
    location = /ok { return 200 "ok\n"; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $url = "http://127.0.0.1:$ENV{TEST_NGINX_H2_PORT}/t";
my $out = `for i in \$(seq 20); do curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version}:%{http_code}\\n' '$url' & done; wait`;
my $ok = () = $out =~ m{^2:200$}mg;
my $busy = () = $out =~ m{^2:429$}mg;
main::result("passed=$ok rejected=$busy\n");
--- request
GET /result
--- response_body
passed=5 rejected=15
--- no_error_log
[alert]
[crit]
