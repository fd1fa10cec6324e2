# resilience_admin with breakers: state as JSON, runtime mode and threshold
# changes that every worker applies without a reload, and bad input turned
# away with a reason.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
no_long_string();
log_level('info');

# the locations under test, proxying to this same nginx
$ENV{TEST_NGINX_BREAKERS} = <<"_EOC_";
    location ~ ^/backend/200\$ { return 200 "ok\n"; }
    location ~ ^/backend/502\$ { return 502; }
    location /api {
        breaker orders zone=breakers;
        breaker_consecutive_failures 3;
        breaker_open 30s jitter=0%;
        proxy_pass http://127.0.0.1:$Test::Nginx::Util::ServerPort/backend/\$arg_s;
    }
    location /tenant {
        breaker tenants zone=breakers key=\$arg_t;
        proxy_pass http://127.0.0.1:$Test::Nginx::Util::ServerPort/backend/200;
    }
    location /admin/ {
        resilience_admin;
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: GET lists every breaker with its state and counts
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["GET /api?s=200", "GET /tenant?t=a", "GET /admin/"]
--- response_body_like eval
[qr/ok/, qr/ok/,
 qr/\A\{"version":"[\d.]+","breakers":\[(\{"name":"orders","key":"","state":"closed","mode":"default",.*"requests":\{"success":1,"failure":0,"slow":0,"rejected":0,"dry_run_rejected":0\}\}|\{"name":"tenants","key":"a",[^\]]*),(\{"name":"orders"|\{"name":"tenants")/]
--- response_headers eval
["", "", "Content-Type: application/json"]
--- no_error_log
[error]



=== TEST 2: PUT force_open opens the breaker at once, without a reload
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["GET /api?s=200",
 "PUT /admin/breakers/orders\n{\"mode\": \"force_open\"}",
 "GET /api?s=200",
 "PUT /admin/breakers/orders\n{\"mode\": \"default\"}",
 "GET /api?s=200"]
--- error_code eval
[200, 200, 503, 200, 200]
--- response_body_like eval
[qr/ok/, qr/"override":\{"mode":"force_open"\},"breakers":\[\{"name":"orders","key":"","state":"closed","mode":"force_open"/,
 qr/503/, qr/"mode":"default"/, qr/ok/]
--- no_error_log
[error]



=== TEST 3: PUT force_closed keeps failures from tripping
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["PUT /admin/breakers/orders\n{\"mode\": \"force_closed\"}",
 "GET /api?s=502", "GET /api?s=502", "GET /api?s=502", "GET /api?s=502"]
--- error_code eval
[200, 502, 502, 502, 502]
--- no_error_log
opened



=== TEST 4: PUT thresholds: consecutive_failures and open take effect
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["PUT /admin/breakers/orders\n{\"consecutive_failures\": 1, \"open\": \"7s\"}",
 "GET /api?s=502", "GET /api?s=200"]
--- error_code eval
[200, 502, 503]
--- response_headers eval
["", "", "Retry-After: 7"]
--- response_body_like eval
[qr/\A\{"breaker":"orders","override":\{"mode":"default","consecutive_failures":1,"open_ms":7000\},"breakers":\[\]\}\n\z/,
 qr//, qr//]
--- no_error_log
[error]



=== TEST 5: a PUT reaches keys created after it
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["PUT /admin/breakers/tenants\n{\"mode\": \"force_open\"}",
 "GET /tenant?t=new"]
--- error_code eval
[200, 503]
--- no_error_log
[error]



=== TEST 6: the change is logged
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request
PUT /admin/breakers/orders
{"mode": "dry_run"}
--- error_code: 200
--- error_log
breaker "orders" changed through resilience_admin



=== TEST 7: an unknown breaker is 404, with the reason
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["GET /admin/breakers/nosuch", "PUT /admin/breakers/nosuch\n{\"mode\": \"off\"}"]
--- error_code eval
[404, 404]
--- response_body eval
["{\"error\":\"no breaker \\\"nosuch\\\"\"}\n",
 "{\"error\":\"no breaker \\\"nosuch\\\"\"}\n"]
--- no_error_log
[error]



=== TEST 8: malformed JSON is 400
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request
PUT /admin/breakers/orders
{"mode": "force_open"
--- error_code: 400
--- response_body
{"error":"the body is not a JSON object"}
--- no_error_log
[error]



=== TEST 9: bad fields and values are 400, and change nothing
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["PUT /admin/breakers/orders\n{\"mode\": \"sometimes\"}",
 "PUT /admin/breakers/orders\n{\"colour\": \"red\"}",
 "PUT /admin/breakers/orders\n{\"consecutive_failures\": -3}",
 "PUT /admin/breakers/orders\n{\"failure_rate\": \"150%\"}",
 "PUT /admin/breakers/orders\n{\"open\": 10}",
 "PUT /admin/breakers/orders\n[1, 2]",
 "PUT /admin/breakers/orders\n{}",
 "PUT /admin/breakers/orders\n{\"mode\": \"force_open\", \"open\": \"x\"}",
 "PUT /admin/breakers/orders\n{\"open\": \"50d\"}",
 "GET /admin/breakers/orders"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 200]
--- response_body_like eval
[qr/invalid mode \\"sometimes\\"/, qr/unknown field \\"colour\\"/,
 qr/field \\"consecutive_failures\\" has the wrong type/,
 qr/invalid value for \\"failure_rate\\"/,
 qr/field \\"open\\" has the wrong type/,
 qr/the body is not a JSON object/, qr/nothing to change/,
 qr/invalid value for \\"open\\"/,
 qr/\\"open\\" is at most 1d, not \\"50d\\"/,
 qr/"breakers":\[\]|"mode":"default"/]
--- no_error_log
[error]



=== TEST 10: a key given twice: the last one wins, as JSON readers expect
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["GET /api?s=200",
 "PUT /admin/breakers/orders\n{\"mode\": \"force_open\", \"mode\": \"default\"}",
 "GET /api?s=200",
 "PUT /admin/breakers/orders\n{\"mode\": \"default\", \"mode\": \"force_open\"}",
 "GET /api?s=200",
 "PUT /admin/breakers/orders\n{\"mode\": \"default\", \"open\": \"5s\", \"open\": \"default\"}"]
--- error_code eval
[200, 200, 200, 200, 503, 200]
--- response_body_like eval
[qr/ok/, qr/"mode":"default"/, qr/ok/, qr/"mode":"force_open"/, qr/503/,
 qr/"override":\{"mode":"default"\}/]
--- no_error_log
[error]



=== TEST 11: other methods are 405; PUT needs an item
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
["DELETE /admin/breakers/orders", "PUT /admin/breakers\n{\"mode\": \"off\"}",
 "GET /admin/nothing"]
--- error_code eval
[405, 405, 404]
--- no_error_log
[error]



=== TEST 12: early answers read the body first: a body that looks like a request gets no answer of its own
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
    location /status { resilience_status; }
    location = /smuggled { return 200 "smuggled\n"; }
    location = /last { return 200 "last\n"; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
use lib 't/lib';
use NR::Html;
use IO::Socket::INET;
use IO::Select;
my $out = '';
for my $t (["PUT", "/admin/breakers"], ["PUT", "/admin/nothing"],
           ["POST", "/admin/breakers"], ["PUT", "/status"],
           ["GET", "/admin/nothing"])
{
    my $inner = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:"
                                      . $ENV{TEST_NGINX_SERVER_PORT},
                                  Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    print $s "$t->[0] $t->[1] HTTP/1.1\r\nHost: localhost\r\n"
             . "Content-Length: " . length($inner) . "\r\n\r\n$inner"
             . "GET /last HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\n\r\n";
    my ($buf, $sel) = ('', IO::Select->new($s));
    my $until = time + 5;
    while (time < $until && $sel->can_read(1)) {
        last unless sysread($s, $buf, 65536, length $buf);
    }
    close $s;
    my @st = $buf =~ m{^HTTP/1\.1 (\d+)}mg;
    $out .= "$t->[0] $t->[1]: @st\n";
}
NR::Html::result($out);
--- request
GET /result
--- response_body
PUT /admin/breakers: 405 200
PUT /admin/nothing: 404 200
POST /admin/breakers: 405 200
PUT /status: 405 200
GET /admin/nothing: 404 200
--- no_error_log
[error]



=== TEST 13: a 60 KiB body is read whole, as the README promises (up to 64 KiB)
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
"PUT /admin/breakers/orders\n{\"mode\": \"dry_run\", \"pad\": \"" . ("x" x 61440) . "\"}"
--- error_code: 400
--- response_body_like eval
qr/unknown field \\"pad\\"/
--- no_error_log
[error]



=== TEST 14: a body over 64 KiB is 413, and the connection stays in step
--- http_config
    breaker_zone breakers 1m;
--- config
    $TEST_NGINX_BREAKERS
--- request eval
"PUT /admin/breakers/orders\n{\"mode\": \"dry_run\", \"pad\": \"" . ("x" x 70000) . "\"}"
--- error_code: 413
--- response_body_like eval
qr/too large/
--- no_error_log
[error]
