# Redis 6+ ACL users: resilience_redis username= password= sends
# AUTH <user> <password>.  The suite's own redis-server holds a user
# allowed only the commands the modules send (and those their scripts
# call), on the prefix's keys and channels only.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port redis_start redis_cli);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

# what the modules send, and what their scripts call (README)
our @Commands = qw(auth select ping evalsha script|load publish subscribe
                   hgetall pttl get set pexpire hincrby incrby decr del
                   hmget zadd zcard zremrangebyscore time multi exec
                   discard);

$ENV{TEST_NGINX_ACL_PORT} = free_port();

redis_start($ENV{TEST_NGINX_ACL_PORT});

for my $user ([nr => 's3cret'], [nr2 => 'first']) {
    redis_cli($ENV{TEST_NGINX_ACL_PORT}, 'ACL', 'SETUSER', $user->[0],
              'reset', 'on', ">$user->[1]", '~nr:*', '&nr:*',
              map { "+$_" } @Commands) =~ /^OK/
        or die "ACL SETUSER $user->[0] failed";
}

run_tests();

__DATA__

=== TEST 1: an ACL user with only the modules' commands: AUTH user password, and commands work
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_ACL_PORT username=nr password=s3cret
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request eval
[
    "GET /redis?cmd=SET+nr:test:acl+v&wait=1",
    "GET /redis?cmd=GET+nr:test:acl",
    "GET /redis?cmd=ACL+WHOAMI",
]
--- response_body_like eval
[
    qr/\AOK\n\z/,
    qr/\A"v"\n\z/,
    qr/\Aerror: NOPERM .*acl/i,
]
--- no_error_log
[error]
[warn]



=== TEST 2: the user really is held to its ACL: other keys and commands are refused
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_ACL_PORT username=nr password=s3cret
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request eval
[
    "GET /redis?cmd=SET+other:key+v&wait=1",
    "GET /redis?cmd=FLUSHALL",
]
--- response_body_like eval
[
    qr/\Aerror: NOPERM /,
    qr/\Aerror: NOPERM /,
]
--- no_error_log
[error]
[warn]



=== TEST 3: the password changed under a live connection: the outage's line, then the refusal once, not once per attempt
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_ACL_PORT username=nr2 password=first
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
for (1 .. 100) {
    last if NR::Redis::redis_cli($ENV{TEST_NGINX_ACL_PORT}, "CLIENT", "LIST",
                                 "TYPE", "normal") =~ /user=nr2/;
    select(undef, undef, undef, 0.05);
}
NR::Redis::redis_cli($ENV{TEST_NGINX_ACL_PORT}, "ACL", "SETUSER", "nr2",
                     "resetpass", ">second");
NR::Redis::redis_cli($ENV{TEST_NGINX_ACL_PORT}, "CLIENT", "KILL", "USER",
                     "nr2");
select(undef, undef, undef, 2.5);
--- request
GET /status
--- response_body_like eval
qr/"state":"(disconnected|connecting)".*"connects":1,"reconnects":[3-9],/
--- grep_error_log eval
qr/\[(?:warn|error|crit|alert)\] [^\n]*?resilience_redis: \S+ \w+/
--- grep_error_log_out eval
qr/\A\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\[error\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\z/
--- error_log eval
[
    qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: connection to 127\.0\.0\.1:\d+ lost/,
    qr/\[error\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: 127\.0\.0\.1:\d+ refused the handshake: WRONGPASS/,
]
--- timeout: 10
