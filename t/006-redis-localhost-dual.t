# A host name that resolves to several addresses: every one is tried, in
# the order the resolver gives them.  On a stock Debian 12, "localhost"
# is ::1 then 127.0.0.1, and the suite's Redis listens on 127.0.0.1
# only: the first address refuses, the second answers.  Runs only where
# localhost resolves that way (some address first, 127.0.0.1 later);
# t/001 proves the same with addresses written out.

use Test::Nginx::Socket;
use lib 't/lib';
use Socket qw(getaddrinfo getnameinfo SOCK_STREAM NI_NUMERICHOST
              NIx_NOSERV);

my ($err, @ai) = getaddrinfo('localhost', '', { socktype => SOCK_STREAM });
my @addrs = map { (getnameinfo($_->{addr}, NI_NUMERICHOST, NIx_NOSERV))[1] }
            @ai;

unless (!$err && @addrs > 1 && $addrs[0] ne '127.0.0.1'
        && grep { $_ eq '127.0.0.1' } @addrs)
{
    plan skip_all => 'localhost resolves to ' . join(', ', @addrs)
                     . ' here, not to another address before 127.0.0.1 '
                     . '(as Debian 12\'s ::1, 127.0.0.1)';
}

plan 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_FIRST} = $addrs[0] =~ /:/ ? "[$addrs[0]]" : $addrs[0];

run_tests();

__DATA__

=== TEST 1: localhost's first address refuses, 127.0.0.1 answers
--- http_config
    resilience_redis localhost:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- error_log eval
qr/\[info\] .*resilience_redis: connect to \Q$ENV{TEST_NGINX_FIRST}\E:\d+ failed/
--- no_error_log
[error]
[warn]
