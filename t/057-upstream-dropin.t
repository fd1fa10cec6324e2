# ngx_http_upstream_discovery_module as a drop-in for nginx's own balancer:
# HTTPS upstreams (SSL sessions per peer), "zone" and other balancing
# methods in the same upstream, $upstream_addr per try, max_fails within
# fail_timeout, max_conns, duplicate server lines.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net qw(http_get);
use File::Temp qw(tempdir);

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

# nginx -t on a configuration: (exit status, output)
sub nginx_t {
    my ($conf) = @_;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    open my $fh, '>', "$dir/nginx.conf" or die;
    my $mods = join "", map { "load_module $_;\n" }
                        split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} // '');
    print $fh "${mods}error_log $dir/logs/error.log;\npid $dir/nginx.pid;\n"
              . "events {}\nhttp {\n$conf\n}\n";
    close $fh;
    my $bin = $ENV{TEST_NGINX_BINARY} // 'nginx';
    my $out = `$bin -p $dir -c $dir/nginx.conf -t 2>&1`;
    return ($? >> 8, $? & 127, $out);
}

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
