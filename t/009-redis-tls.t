# resilience_redis over TLS: nginx's own SSL layer does the I/O (hiredis
# 0.14 has none).  The suite makes a CA, a second (wrong) CA, a server
# certificate for localhost and 127.0.0.1 and a client certificate with
# openssl, and starts two TLS-only redis-servers: one that asks for no
# client certificate, one that requires it.  Where a block wants a
# refusal's reason, the outage's line or a later attempt's will do: the
# first attempt may come before the block's log position is taken.

use Test::Nginx::Socket;
use lib 't/lib';
use Cwd qw(getcwd);
use File::Path qw(make_path remove_tree);
use NR::Redis qw(free_port redis_cli);

if (system("openssl version >/dev/null 2>&1") != 0) {
    plan skip_all => 'openssl is not installed';
}

plan 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

our $Dir = getcwd() . "/t/servroot-tls-$$";
our @Redis;

make_path($Dir);

sub openssl {
    my ($args) = @_;
    system("openssl $args >>$Dir/openssl.log 2>&1") == 0
        or die "openssl $args failed (see $Dir/openssl.log)";
}

sub make_ca {
    my ($name) = @_;
    openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=$name"
            . " -keyout $Dir/$name.key -out $Dir/$name.pem");
}

sub make_leaf {
    my ($name, $cn, $san) = @_;
    open my $fh, '>', "$Dir/$name.ext" or die;
    print $fh "subjectAltName=$san\n" if $san;
    close $fh;
    openssl("req -newkey rsa:2048 -nodes -subj /CN=$cn"
            . " -keyout $Dir/$name.key -out $Dir/$name.csr");
    openssl("x509 -req -in $Dir/$name.csr -CA $Dir/ca.pem -CAkey $Dir/ca.key"
            . " -CAcreateserial -days 2 -extfile $Dir/$name.ext"
            . " -out $Dir/$name.pem");
}

sub tls_redis {
    my ($port, $auth) = @_;
    my $d = "$Dir/redis-$port";
    make_path($d);
    system("redis-server", "--port", 0, "--tls-port", $port,
           "--bind", "127.0.0.1", "--tls-cert-file", "$Dir/server.pem",
           "--tls-key-file", "$Dir/server.key",
           "--tls-ca-cert-file", "$Dir/ca.pem",
           "--tls-auth-clients", $auth, "--save", "", "--appendonly", "no",
           "--daemonize", "yes", "--dir", $d, "--pidfile", "$d/redis.pid",
           "--logfile", "$d/redis.log") == 0
        or die "redis-server --tls-port $port failed to start";
    push @Redis, "$d/redis.pid";

    for (1 .. 50) {
        return if `redis-cli --tls --cacert $Dir/ca.pem --cert $Dir/client.pem --key $Dir/client.key -p $port PING 2>&1` =~ /PONG/;
        select(undef, undef, undef, 0.1);
    }

    die "redis-server --tls-port $port does not answer";
}

make_ca('ca');
make_ca('wrongca');
make_leaf('server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
make_leaf('client', 'nginx', '');

$ENV{TEST_NGINX_TLS_DIR} = $Dir;
$ENV{TEST_NGINX_TLS_PORT} = free_port();
$ENV{TEST_NGINX_MTLS_PORT} = free_port();

tls_redis($ENV{TEST_NGINX_TLS_PORT}, 'no');
tls_redis($ENV{TEST_NGINX_MTLS_PORT}, 'yes');

END {
    for my $pidfile (@Redis) {
        open my $fh, '<', $pidfile or next;
        my $pid = <$fh>;
        close $fh;
        kill 'TERM', $pid if $pid;
    }
    select(undef, undef, undef, 0.3);
    remove_tree($Dir) if $Dir && !$ENV{TEST_NGINX_NO_CLEAN};
}

run_tests();

__DATA__

=== TEST 1: TLS, the certificate verified against the CA and the server name
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/ca.pem
                     tls_server_name=localhost
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request eval
[
    "GET /redis?cmd=SET+nr:test:tls+secret&wait=1",
    "GET /redis?cmd=GET+nr:test:tls",
    "GET /redis?cmd=SET+nr:test:tls+x&repeat=500",
]
--- response_body eval
[
    "OK\n",
    "\"secret\"\n",
    "reply=500 failed=0 timedout=0 busy=0 lost=0 busy_ms=0\n",
]
--- no_error_log
[error]
[warn]
[crit]



=== TEST 2: with no tls_server_name, the address's IP is checked against the certificate
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/ca.pem
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- no_error_log
[error]
[warn]
[crit]



=== TEST 3: a certificate from another CA: refused, with the reason, and commands fail
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/wrongca.pem
                     tls_server_name=localhost
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
select(undef, undef, undef, 0.5);
--- request
GET /redis?cmd=PING&wait=1
--- response_body
failed
--- error_log eval
qr/resilience_redis: (?:127\.0\.0\.1:\d+ unavailable: )?connect to 127\.0\.0\.1:\d+ failed: TLS certificate verify error: \(\d+:[^)]+\)/
--- no_error_log
[alert]
[crit]
--- timeout: 10



=== TEST 4: a certificate for another name: refused, with the reason
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/ca.pem
                     tls_server_name=redis.example.com
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
select(undef, undef, undef, 0.5);
--- request
GET /redis?cmd=PING&wait=1
--- response_body
failed
--- error_log eval
qr/resilience_redis: (?:127\.0\.0\.1:\d+ unavailable: )?connect to 127\.0\.0\.1:\d+ failed: TLS certificate does not match "redis\.example\.com"/
--- no_error_log
[alert]
[crit]
--- timeout: 10



=== TEST 5: tls_verify=off: any certificate is taken
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls=on tls_verify=off
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- no_error_log
[error]
[warn]
[crit]



=== TEST 6: a server that requires a client certificate: refused without one
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_MTLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/ca.pem
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
select(undef, undef, undef, 0.5);
--- request
GET /redis?cmd=PING&wait=1
--- response_body
failed
--- error_log eval
qr/resilience_redis: (?:127\.0\.0\.1:\d+ unavailable: )?connect to 127\.0\.0\.1:\d+ failed: .*(certificate|alert|closed)/
--- no_error_log
[alert]
[crit]
--- timeout: 10



=== TEST 7: ... and served with tls_certificate= and tls_certificate_key=
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_MTLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/ca.pem
                     tls_certificate=$TEST_NGINX_TLS_DIR/client.pem
                     tls_certificate_key=$TEST_NGINX_TLS_DIR/client.key
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- no_error_log
[error]
[warn]
[crit]



=== TEST 8: pub/sub over TLS
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls=on
                     tls_trusted_certificate=$TEST_NGINX_TLS_DIR/ca.pem
                     connect_timeout=2s command_timeout=1s;
    resilience_test_subscribe nr:test:tlschannel;
--- config
    location /redis { resilience_test_redis; }
    location /messages { resilience_test_messages; }
--- init
my $cli = "redis-cli --tls --cacert $main::Dir/ca.pem -p $ENV{TEST_NGINX_TLS_PORT}";
for (1 .. 100) {
    last if `$cli PUBSUB NUMSUB nr:test:tlschannel 2>&1` =~ /^1$/m;
    select(undef, undef, undef, 0.05);
}
--- request eval
[
    "GET /redis?cmd=PUBLISH+nr:test:tlschannel+hello&wait=1",
    "GET /messages",
]
--- response_body eval
[
    "(integer) 1\n",
    "nr:test:tlschannel: hello\n1 messages\n",
]
--- no_error_log
[error]
[warn]



=== TEST 9: tls_verify=on (the default) without tls_trusted_certificate= stops nginx
--- http_config
    resilience_redis 127.0.0.1:6379 tls=on;
--- config
--- must_die
--- error_log
"resilience_redis" directive: "tls_verify=on" (the default) needs "tls_trusted_certificate="



=== TEST 10: tls_ parameters without tls=on stop nginx
--- http_config
    resilience_redis 127.0.0.1:6379 tls_server_name=localhost;
--- config
--- must_die
--- error_log
"resilience_redis" directive: tls_... parameters need "tls=on"
