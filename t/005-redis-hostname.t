# A host name for resilience_redis: resolved once, at configuration time,
# into all its addresses.  Runs only where "localhost" resolves to
# 127.0.0.1 (among other addresses or not), where the suite's Redis
# listens: no block depends on the order the machine gives them in.

use Test::Nginx::Socket;
use lib 't/lib';
use Socket qw(getaddrinfo getnameinfo SOCK_STREAM NI_NUMERICHOST
              NIx_NOSERV);

my ($err, @ai) = getaddrinfo('localhost', '', { socktype => SOCK_STREAM });
my @addrs = map { (getnameinfo($_->{addr}, NI_NUMERICHOST, NIx_NOSERV))[1] }
            @ai;

if ($err || !grep { $_ eq '127.0.0.1' } @addrs) {
    plan skip_all => 'localhost does not resolve to 127.0.0.1 here ('
                     . join(', ', @addrs) . ')';
}

plan 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;

run_tests();

__DATA__

=== TEST 1: a host name is resolved once, at configuration time
--- http_config
    resilience_redis localhost:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- no_error_log
[error]
[warn]
