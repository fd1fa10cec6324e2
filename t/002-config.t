# Configuration: resilience_redis and resilience_status arguments, and the
# shared parsers (durations, sizes, percentages, rates, status ranges):
# valid forms parse to the right value, invalid ones stop nginx with the
# directive and the bad value named.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;

run_tests();

__DATA__

=== TEST 1: every option of resilience_redis, written out
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=0 prefix=app1:
                     connect_timeout=1s command_timeout=250ms;
--- config
    location /status { resilience_status json; }
--- request
GET /status
--- response_body_like eval
qr/"redis":\{"configured":true,"address":"127\.0\.0\.1:\d+","workers":\[\{"worker":0,/
--- no_error_log
[error]



=== TEST 2: several addresses, comma-separated, a unix socket among them
--- http_config
    resilience_redis unix:/nonexistent/redis.sock,127.0.0.1:$TEST_NGINX_REDIS_PORT
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- request eval
[
    "GET /redis?cmd=PING&wait=1",
    "GET /status",
]
--- response_body_like eval
[
    qr/\APONG\n\z/,
    qr/"address":"unix:\/nonexistent\/redis\.sock,127\.0\.0\.1:\d+"/,
]
--- no_error_log
[error]



=== TEST 3: resilience_status defaults to Prometheus text
--- config
    location /metrics { resilience_status; }
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
qr/\A# HELP nginx_resilience_redis_connected .*\n# TYPE nginx_resilience_redis_connected gauge\n/
--- no_error_log
[error]



=== TEST 4: the status handler refuses other methods than GET and HEAD
--- config
    location /metrics { resilience_status; }
--- request
POST /metrics
hello
--- error_code: 405
--- no_error_log
[error]



=== TEST 5: labels and help are escaped the Prometheus way
--- http_config
    resilience_test_metric test_gauge 'quote" back\\slash';
--- config
    location /metrics { resilience_status prometheus; }
--- request
GET /metrics
--- response_body_like eval
qr/^# HELP nginx_resilience_test_gauge A test gauge\.\\\\ with "help"\\non two lines\.\n# TYPE nginx_resilience_test_gauge gauge\nnginx_resilience_test_gauge\{label="quote\\" back\\\\x5cslash"\} 42\n/m
--- no_error_log
[error]



=== TEST 6: the same metric as JSON
--- http_config
    resilience_test_metric test_gauge 'quote" back\\slash';
--- config
    location /metrics { resilience_status json; }
--- request
GET /metrics
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/"nginx_resilience_test_gauge":\{"type":"gauge","help":"A test gauge\.\\\\ with \\"help\\"\\non two lines\.","samples":\[\{"labels":\{"label":"quote\\" back\\\\x5cslash"\},"value":42\}\]\}/
--- no_error_log
[error]



=== TEST 7: durations
--- config
    location /a { resilience_test_parse duration 250ms; }
    location /b { resilience_test_parse duration 3s; }
    location /c { resilience_test_parse duration 1m30s; }
    location /d { resilience_test_parse duration 2h; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /d"]
--- response_body eval
["250ms\n", "3000ms\n", "90000ms\n", "7200000ms\n"]
--- no_error_log
[error]



=== TEST 8: sizes, percentages
--- config
    location /a { resilience_test_parse size 10m; }
    location /b { resilience_test_parse size 64k; }
    location /c { resilience_test_parse percent 50%; }
    location /d { resilience_test_parse percent 12.5%; }
    location /e { resilience_test_parse percent 100%; }
    location /f { resilience_test_parse percent 0.01%; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /d", "GET /e", "GET /f"]
--- response_body eval
["10485760 bytes\n", "65536 bytes\n", "5000 basis points\n",
 "1250 basis points\n", "10000 basis points\n", "1 basis points\n"]
--- no_error_log
[error]



=== TEST 9: rates per second, minute, hour and day, fractional
--- config
    location /a { resilience_test_parse rate 100r/s; }
    location /b { resilience_test_parse rate 1.5r/m; }
    location /c { resilience_test_parse rate 20r/h; }
    location /d { resilience_test_parse rate 0.001r/d; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /d"]
--- response_body eval
["100000/1000 per 1000ms\n", "1500/1000 per 60000ms\n",
 "20000/1000 per 3600000ms\n", "1/1000 per 86400000ms\n"]
--- no_error_log
[error]



=== TEST 10: status codes and ranges
--- config
    location /a { resilience_test_parse status 502 503 504; }
    location /b { resilience_test_parse status 500-599; }
    location /c { resilience_test_parse status 429 500-502; }
--- request eval
["GET /a", "GET /b", "GET /c"]
--- response_body eval
["502 503 504 (3 codes)\n", "500 501 502 (100 codes)\n",
 "429 500 501 (4 codes)\n"]
--- no_error_log
[error]



=== TEST 11: resilience_redis: an unknown parameter
--- http_config
    resilience_redis 127.0.0.1:6379 passwd=x;
--- config
--- must_die
--- error_log
"resilience_redis" directive: invalid parameter "passwd=x"



=== TEST 12: resilience_redis: a bad address
--- http_config
    resilience_redis 127.0.0.1:99999;
--- config
--- must_die
--- error_log
"resilience_redis" directive: invalid address "127.0.0.1:99999"



=== TEST 13: resilience_redis: an empty address in a list
--- http_config
    resilience_redis 127.0.0.1:6379,;
--- config
--- must_die
--- error_log
"resilience_redis" directive: invalid address "127.0.0.1:6379,"



=== TEST 14: resilience_redis: a bad connect_timeout
--- http_config
    resilience_redis 127.0.0.1:6379 connect_timeout=fast;
--- config
--- must_die
--- error_log
"resilience_redis" directive: invalid duration "fast", expected a time such as 500ms, 3s, 1m or 1h



=== TEST 15: resilience_redis: a zero command_timeout
--- http_config
    resilience_redis 127.0.0.1:6379 command_timeout=0;
--- config
--- must_die
--- error_log
"resilience_redis" directive: "command_timeout=0" must be more than 0



=== TEST 16: resilience_redis: a negative db
--- http_config
    resilience_redis 127.0.0.1:6379 db=-1;
--- config
--- must_die
--- error_log
"resilience_redis" directive: invalid number "-1", expected 0 to 1000000



=== TEST 17: resilience_redis: twice
--- http_config
    resilience_redis 127.0.0.1:6379;
    resilience_redis 127.0.0.1:6380;
--- config
--- must_die
--- error_log
"resilience_redis" directive is duplicate



=== TEST 18: resilience_redis: not at http level
--- config
    location / { resilience_redis 127.0.0.1:6379; }
--- must_die
--- error_log
"resilience_redis" directive is not allowed here



=== TEST 19: resilience_status: an unknown format
--- config
    location /s { resilience_status xml; }
--- must_die
--- error_log
"resilience_status" directive: invalid format "xml", expected "prometheus" or "json"



=== TEST 20: a bad duration
--- config
    location /a { resilience_test_parse duration 3x; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid duration "3x"



=== TEST 21: a bad size
--- config
    location /a { resilience_test_parse size 10q; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid size "10q"



=== TEST 22: a percentage over 100%
--- config
    location /a { resilience_test_parse percent 100.5%; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid percentage "100.5%"



=== TEST 23: a percentage without its sign
--- config
    location /a { resilience_test_parse percent 50; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid percentage "50"



=== TEST 24: a rate with an unknown unit
--- config
    location /a { resilience_test_parse rate 10r/x; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid rate "10r/x"



=== TEST 25: a zero rate
--- config
    location /a { resilience_test_parse rate 0r/s; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid rate "0r/s"



=== TEST 26: a rate with too many decimals
--- config
    location /a { resilience_test_parse rate 1.0005r/s; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid rate "1.0005r/s"



=== TEST 27: a status out of range
--- config
    location /a { resilience_test_parse status 600; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid status "600", expected a code from 100 to 599 or a range such as 500-599



=== TEST 28: a reversed status range
--- config
    location /a { resilience_test_parse status 599-500; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid status "599-500"



=== TEST 29: a status that is not a number
--- config
    location /a { resilience_test_parse status 5xx; }
--- must_die
--- error_log
"resilience_test_parse" directive: invalid status "5xx"



=== TEST 30: a histogram: cumulative buckets up to le="+Inf", after the labels
--- http_config
    resilience_test_histogram test_hist 'quote" back\\slash';
--- config
    location /metrics { resilience_status prometheus; }
--- request
GET /metrics
--- response_body_like eval
qr/^# HELP nginx_resilience_test_hist A test histogram\.
# TYPE nginx_resilience_test_hist histogram
nginx_resilience_test_hist_bucket\{label="quote\\" back\\\\x5cslash",le="0\.005"\} 1
nginx_resilience_test_hist_bucket\{label="quote\\" back\\\\x5cslash",le="0\.5"\} 1
nginx_resilience_test_hist_bucket\{label="quote\\" back\\\\x5cslash",le="1"\} 3
nginx_resilience_test_hist_bucket\{label="quote\\" back\\\\x5cslash",le="2\.5"\} 3
nginx_resilience_test_hist_bucket\{label="quote\\" back\\\\x5cslash",le="\+Inf"\} 6
nginx_resilience_test_hist_sum\{label="quote\\" back\\\\x5cslash"\} 12\.500000
nginx_resilience_test_hist_count\{label="quote\\" back\\\\x5cslash"\} 6
/m
--- no_error_log
[error]



=== TEST 31: the histogram as JSON
--- http_config
    resilience_test_histogram test_hist 'quote" back\\slash';
--- config
    location /metrics { resilience_status json; }
--- request
GET /metrics
--- response_body_like eval
qr/"nginx_resilience_test_hist":\{"type":"histogram","help":"A test histogram\.","samples":\[\{"labels":\{"label":"quote\\" back\\\\x5cslash"\},"buckets":\{"0\.005":1,"0\.5":1,"1":3,"2\.5":3,"\+Inf":6\},"sum":12\.5,"count":6\}\]\}/
--- no_error_log
[error]



=== TEST 32: bounds out of order are refused: the status request fails
--- http_config
    resilience_test_histogram test_hist x unordered;
--- config
    location /metrics { resilience_status prometheus; }
--- request
GET /metrics
--- error_code: 500
--- error_log
resilience_status: a metrics collector failed



=== TEST 33: resilience_redis: username= without password=
--- http_config
    resilience_redis 127.0.0.1:6379 username=nr;
--- config
--- must_die
--- error_log
"resilience_redis" directive: "username=nr" needs "password="
