# ngx_http_upstream_discovery_module as a drop-in for nginx's own balancer:
# HTTPS upstreams (SSL sessions per peer), "zone" and other balancing
# methods in the same upstream, $upstream_addr per try, max_fails within
# fail_timeout, max_conns, duplicate server lines.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(http_get);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(A B C TLS);

# a certificate for the TLS backend, made now
my $certs = "/tmp/nr-upstream-certs-$ENV{TEST_NGINX_SERVER_PORT}";
mkdir $certs;
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
       . "-keyout $certs/key.pem -out $certs/cert.pem >/dev/null 2>&1") == 0
    or die "openssl req failed";
$ENV{TEST_NGINX_CERTS} = $certs;

$ENV{TEST_NGINX_BACKENDS} = <<"_EOC_";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_A_PORT};
        location / { return 200 "A\\n"; }
        location /fail { return 502; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_B_PORT};
        location / { return 200 "B\\n"; }
        location /fail { return 200 "B\\n"; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_C_PORT};
        location / { return 200 "C\\n"; }
        location /fail { return 200 "C\\n"; }
    }
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_TLS_PORT} ssl;
        ssl_certificate $ENV{TEST_NGINX_CERTS}/cert.pem;
        ssl_certificate_key $ENV{TEST_NGINX_CERTS}/key.pem;
        location / { return 200 "tls \$ssl_session_reused\\n"; }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: an HTTPS upstream with health_check: served, the SSL session reused on the next request
--- http_config
    $TEST_NGINX_BACKENDS
    upstream tls {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_TLS_PORT;
    }
--- config
    location / {
        proxy_pass https://tls;
    }
--- request eval
["GET /", "GET /", "GET /"]
--- response_body eval
["tls .\n", "tls r\n", "tls r\n"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: zone in the same upstream: nginx starts, both peers serve
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        zone app 64k;
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / { proxy_pass http://app; }
--- request eval
["GET /", "GET /", "GET /", "GET /"]
--- response_body eval
["A\n", "B\n", "A\n", "B\n"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: zone after discovery, with keepalive after both
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        discovery file=$TEST_NGINX_CERTS/none.json interval=10s;
        zone app 64k;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        keepalive 4;
    }
--- config
    location / {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
--- request eval
["GET /", "GET /"]
--- response_body eval
["A\n", "A\n"]
--- no_error_log
[alert]
[crit]



=== TEST 4: least_conn after health_check is refused, naming both
--- http_config
    upstream app {
        health_check;
        server 127.0.0.1:1;
        least_conn;
    }
--- config
--- must_die
--- error_log
upstream "app": a balancing method ("hash", "ip_hash", "least_conn", "random") after "health_check" replaces it



=== TEST 5: hash after discovery is refused, naming both
--- http_config
    upstream app {
        discovery file=/tmp/nr-none.json;
        server 127.0.0.1:1;
        hash $uri consistent;
    }
--- config
--- must_die
--- error_log
upstream "app": a balancing method ("hash", "ip_hash", "least_conn", "random") after "discovery" replaces it



=== TEST 6: random before health_check is refused, naming both
--- http_config
    upstream app {
        random;
        server 127.0.0.1:1;
        health_check;
    }
--- config
--- must_die
--- error_log
"health_check" directive cannot follow a balancing method ("hash", "ip_hash", "least_conn", "random") nor "keepalive"



=== TEST 7: ip_hash and keepalive after health_check: refused, not silently replaced
--- http_config
    upstream app {
        health_check;
        server 127.0.0.1:1;
        ip_hash;
        keepalive 2;
    }
--- config
--- must_die
--- error_log
after "health_check" replaces it



=== TEST 8: $upstream_addr names each try's own peer
--- http_config
    $TEST_NGINX_BACKENDS
    upstream app {
        health_check type=tcp interval=10s;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
        server 127.0.0.1:$TEST_NGINX_B_PORT;
    }
--- config
    location / {
        proxy_pass http://app;
        proxy_next_upstream error timeout http_502;
        add_header X-Addr $upstream_addr always;
        add_header X-Status $upstream_status always;
    }
--- request
GET /fail
--- response_headers eval
"X-Addr: 127.0.0.1:$ENV{TEST_NGINX_A_PORT}, 127.0.0.1:$ENV{TEST_NGINX_B_PORT}
X-Status: 502, 200"

--- response_body
B
--- no_error_log
[alert]
[crit]
