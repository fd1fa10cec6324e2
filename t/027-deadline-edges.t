# ngx_http_deadline_module at the edges of the upstream's life: a request
# held by proxy_cache_lock, a name still being resolved, a kept-alive
# connection's next request, an upstream slower than every budget
# (deadline_min auto), and no try started past the deadline with several
# peers.  The upstreams that log arrivals show the upstream is never
# contacted after the deadline.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(arrival_server slow_server);
use NR::SlowDns;

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

# the port this nginx listens on, for the upstreams it proxies to itself
$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;

for my $i (1 .. 2) {
    $ENV{"TEST_NGINX_ARRIVE${i}_PORT"} = free_port();
    $ENV{"TEST_NGINX_ARRIVALS$i"} = "/tmp/nr-edges-$$-$i.log";
}

$ENV{"TEST_NGINX_SLOW${_}_PORT"} = free_port() for 1 .. 4;
$ENV{TEST_NGINX_DNS_PORT} = free_port();
$ENV{TEST_NGINX_ECHO_PORT} = free_port();
$ENV{TEST_NGINX_CACHE} = "/tmp/nr-edges-cache-$$";

END {
    unlink glob "/tmp/nr-edges-$$-*.log";
    system("rm", "-rf", $ENV{TEST_NGINX_CACHE});
}

run_tests();

__DATA__

=== TEST 1: a request held by proxy_cache_lock, then sent to a slow upstream, is cut at its deadline cleanly (504 at 1.2 s, no alert)
--- http_config
    proxy_cache_path $TEST_NGINX_CACHE keys_zone=edges:1m;
--- config
    location = /c {
        deadline_from x-ms ms;
        proxy_cache edges;
        proxy_cache_key fixed;
        proxy_cache_lock on;
        proxy_cache_lock_timeout 300ms;
        proxy_cache_valid 200 1m;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ARRIVE1_PORT;
        add_header X-Time $request_time always;
    }
    location = /arrivals {
        default_type text/plain;
        alias $TEST_NGINX_ARRIVALS1;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE1_PORT},
                        $ENV{TEST_NGINX_ARRIVALS1}, 10, 2.5);
# the request that takes the cache lock, with budget to spare
if (fork() == 0) {
    NR::Net::detach();
    NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/c", "x-ms: 20000");
    POSIX::_exit(0);
}
select(undef, undef, undef, 0.2);
--- request eval
["GET /c", "GET /arrivals"]
--- more_headers
x-ms: 1200
--- error_code eval
[504, 200]
--- response_headers_like eval
["X-Time: 1\\.\\d+", ""]
--- response_body_like eval
[".*", "GET /c.*\\n.*GET /c"]
--- timeout: 6
--- no_error_log
[alert]
[crit]



=== TEST 2: the next request of a kept-alive connection propagates exactly one header, its own (the client's is not kept because the previous request looked for it)
--- config
    deadline 5s;
    location = /p {
        deadline_propagate x-deadline ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_ECHO_PORT;
    }
    location = /r {
        set $x $deadline_remaining_ms;
        error_page 418 = /p;
        return 418;
    }
--- init
# answers with every x-deadline header it received, in order
NR::Net::forked_server($ENV{TEST_NGINX_ECHO_PORT}, 6, sub {
    my ($c) = @_;
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        sysread($c, $buf, 4096, length $buf) or return;
    }
    my $got = join ',', $buf =~ /^x-deadline:\s*([^\r\n]*)/mgi;
    my $body = "[$got]\n";
    print $c "HTTP/1.1 200 OK\r\nContent-Length: ", length $body,
             "\r\nConnection: close\r\n\r\n$body";
});
--- pipelined_requests eval
["GET /p", "GET /r"]
--- more_headers
x-deadline: 99999
--- response_body_like eval
["^\\[\\d{1,4}\\]\n\\z", "^\\[\\d{1,4}\\]\n\\z"]
--- no_error_log
[error]
[alert]



=== TEST 3: deadline_min auto sheds when the upstream is slower than every budget: 3 tries cut at the deadline are its samples, the next requests are answered at once
--- config
    location /t {
        deadline 800ms;
        deadline_min auto window=20s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW1_PORT;
        add_header X-Time $request_time always;
    }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW1_PORT}, 3, 15);
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[504, 504, 504, 504, 504, 504]
--- response_headers_like eval
["X-Time: (0\\.[89]|1\\.[0-4])\\d*", "X-Time: (0\\.[89]|1\\.[0-4])\\d*",
 "X-Time: (0\\.[89]|1\\.[0-4])\\d*",
 "X-Time: 0\\.[0-4]\\d*", "X-Time: 0\\.[0-4]\\d*", "X-Time: 0\\.[0-4]\\d*"]
--- timeout: 10
--- no_error_log
[alert]
[crit]



=== TEST 4: a budget spent while the upstream's name is resolved: 504 at the deadline (1 s, the name comes at 1.5 s), the upstream never contacted
--- config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off valid=1s;
    resolver_timeout 5s;
    location = /t {
        deadline 1s;
        set $up "slow.test:$TEST_NGINX_ARRIVE2_PORT";
        proxy_pass http://$up;
        add_header X-Time $request_time always;
    }
    location = /arrivals {
        default_type text/plain;
        alias $TEST_NGINX_ARRIVALS2;
    }
--- init
NR::Net::arrival_server($ENV{TEST_NGINX_ARRIVE2_PORT},
                        $ENV{TEST_NGINX_ARRIVALS2}, 8, 0);
NR::SlowDns::start($ENV{TEST_NGINX_DNS_PORT}, 1.5, 8);
--- request eval
["GET /t", "GET /arrivals"]
--- error_code eval
[504, 200]
--- response_headers_like eval
["X-Time: 1\\.[0-3]\\d*", "Content-Length: 0"]
--- timeout: 6
--- no_error_log
[alert]
[crit]



=== TEST 5: no try starts past the deadline: three slow peers, a read timeout of 1 s, deadline 1.5 s: 504 at 1.5 s (a third try would end at 2.5 s)
--- http_config
    upstream slow_three {
        server 127.0.0.1:$TEST_NGINX_SLOW2_PORT;
        server 127.0.0.1:$TEST_NGINX_SLOW3_PORT;
        server 127.0.0.1:$TEST_NGINX_SLOW4_PORT;
    }
--- config
    location /t {
        deadline 1500ms;
        proxy_pass http://slow_three/;
        proxy_read_timeout 1s;
        proxy_next_upstream error timeout;
        add_header X-Time $request_time always;
    }
--- init
NR::Net::slow_server($ENV{"TEST_NGINX_SLOW${_}_PORT"}, 5, 8) for 2 .. 4;
--- request
GET /t
--- error_code: 504
--- response_headers_like
X-Time: (1\.[5-9]|2\.[0-2])\d*
--- timeout: 4
--- error_log
upstream timed out
--- no_error_log
[alert]
[crit]



=== TEST 6: a request held in a rate limit's delay longer than its budget is answered 504 at the deadline (0.4 s), not when the delay ends (1 s)
--- http_config
    ratelimit_zone edges key=$server_name size=1m rate=1r/s;
--- config
    location = /t {
        deadline 400ms;
        ratelimit edges burst=5;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/f;
        add_header X-Time $request_time always;
    }
    location = /f {
        return 200 "f\n";
    }
--- request eval
["GET /t", "GET /t", "GET /f"]
--- error_code eval
[200, 504, 200]
--- response_headers_like eval
["X-Time: 0\\.[0-2]\\d*", "X-Time: 0\\.[4-8]\\d*", ""]
--- timeout: 5
--- no_error_log
[alert]
[crit]



=== TEST 7: server-level deadline_min auto over 17 upstream locations: nginx -t names the limit (16 locations), the location past it and where the directive should go
--- config
    deadline 1s;
    deadline_min auto;
    location /l1 { proxy_pass http://127.0.0.1:1; }
    location /l2 { proxy_pass http://127.0.0.1:1; }
    location /l3 { proxy_pass http://127.0.0.1:1; }
    location /l4 { proxy_pass http://127.0.0.1:1; }
    location /l5 { proxy_pass http://127.0.0.1:1; }
    location /l6 { proxy_pass http://127.0.0.1:1; }
    location /l7 { proxy_pass http://127.0.0.1:1; }
    location /l8 { proxy_pass http://127.0.0.1:1; }
    location /l9 { proxy_pass http://127.0.0.1:1; }
    location /l10 { proxy_pass http://127.0.0.1:1; }
    location /l11 { proxy_pass http://127.0.0.1:1; }
    location /l12 { proxy_pass http://127.0.0.1:1; }
    location /l13 { proxy_pass http://127.0.0.1:1; }
    location /l14 { proxy_pass http://127.0.0.1:1; }
    location /l15 { proxy_pass http://127.0.0.1:1; }
    location /l16 { proxy_pass http://127.0.0.1:1; }
    location /l17 { proxy_pass http://127.0.0.1:1; }
--- must_die
--- error_log
"deadline_min auto" applies to more than 16 locations with an upstream (the limit of its samples' zone): location "/l17" is one more; set in a server or http block, it applies to each of that block's upstream locations: set it only in those that need it
