# The core module's Redis client inside a running nginx: commands, batches,
# scripts and pub/sub round-trip; Redis absent, killed and paused.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port redis_start redis_stop redis_kill redis_cli
                 redis_later);
use NR::Net ();

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_DOWN_PORT} = free_port();
$ENV{TEST_NGINX_LATE_PORT} = free_port();
$ENV{TEST_NGINX_KILL_PORT} = free_port();

# a Redis on a unix socket only, in a directory NR::Redis cleans up
$ENV{TEST_NGINX_UNIX_DIR} = NR::Redis::redis_dir(free_port());

# under valgrind, the resident set is valgrind's: no bound to prove there
our $RssMax = $ENV{TEST_NGINX_USE_VALGRIND} ? 1000000 : 2048;

# until this nginx's command connection is up (a slow start under
# valgrind), so that a pause from init catches it ready
sub wait_connected {
    for (1 .. 200) {
        my ($st, $body) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT},
                                            "/status");
        return if defined $body && $body =~ /"state":"connected"/;
        select(undef, undef, undef, 0.05);
    }
}

run_tests();

__DATA__

=== TEST 1: a command round-trips and the status counters move
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- request eval
[
    "GET /redis?cmd=SET+nr:test:k+hello",
    "GET /redis?cmd=GET+nr:test:k",
    "GET /status",
]
--- response_body_like eval
[
    qr/\AOK\n\z/,
    qr/\A"hello"\n\z/,
    qr/"state":"connected".*"commands":2,"replies":2,"errors":0,"timeouts":0,"connects":1,"reconnects":0/,
]
--- no_error_log
[error]
[warn]



=== TEST 2: commands are binary safe
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request eval
[
    "GET /redis?cmd=SET+nr:test:bin+a%00b%0D%0Ac",
    "GET /redis?cmd=STRLEN+nr:test:bin",
]
--- response_body eval
[
    "OK\n",
    "(integer) 6\n",
]
--- no_error_log
[error]



=== TEST 3: a batch runs as one MULTI/EXEC with one reply
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request eval
[
    "GET /redis?cmd=DEL+nr:test:n",
    "GET /redis?batch=INCR+nr:test:n|INCRBY+nr:test:n+10|GET+nr:test:n",
]
--- response_body eval
[
    qr/\A\(integer\) [01]\n\z/,
    "[(integer) 1, (integer) 11, \"11\"]\n",
]
--- no_error_log
[error]



=== TEST 4: a Redis error reply reaches the caller as a reply, and counts
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- request eval
[
    "GET /redis?cmd=NOSUCHCOMMAND+x",
    "GET /status",
]
--- response_body_like eval
[
    qr/\Aerror: ERR unknown command/,
    qr/"errors":1,/,
]
--- no_error_log
[error]



=== TEST 5: EVALSHA loads the script again after SCRIPT FLUSH (NOSCRIPT)
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
    resilience_test_script pair "return {KEYS[1], ARGV[1], redis.call('TYPE', KEYS[1])['ok']}";
--- config
    location /redis { resilience_test_redis; }
--- init
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "SCRIPT", "FLUSH");
--- request
GET /redis?script=pair&keys=1&args=nr:test:none+v1
--- response_body
["nr:test:none", "v1", "none"]
--- grep_error_log eval
qr/resilience_redis: loading script \w+/
--- grep_error_log_out eval
qr/\Aresilience_redis: loading script [0-9a-f]{40}\n\z/
--- no_error_log
[error]



=== TEST 6: once loaded, the script runs by its SHA1 alone
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
    resilience_test_script pair "return {KEYS[1], ARGV[1], redis.call('TYPE', KEYS[1])['ok']}";
--- config
    location /redis { resilience_test_redis; }
--- request eval
[
    "GET /redis?script=pair&keys=1&args=nr:test:none+v1",
    "GET /redis?script=pair&keys=1&args=nr:test:none+v2",
]
--- response_body eval
[
    "[\"nr:test:none\", \"v1\", \"none\"]\n",
    "[\"nr:test:none\", \"v2\", \"none\"]\n",
]
--- no_error_log
loading script
[error]



=== TEST 7: AUTH with a wrong password is refused, logged, retried with backoff
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=wrong
                     connect_timeout=2s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING
--- response_body
failed
--- wait: 0.3
--- error_log eval
qr/\[error\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: 127\.0\.0\.1:\d+ refused the handshake: .*(AUTH|auth|password)/
--- no_error_log
[alert]
[crit]



=== TEST 8: SELECT db= takes effect
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=3
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "-n", 3, "SET", "nr:test:db", "three");
--- request
GET /redis?cmd=GET+nr:test:db
--- response_body
"three"
--- no_error_log
[error]



=== TEST 9: pub/sub: a message published reaches the subscriber callback
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT connect_timeout=2s
                     command_timeout=1s;
    resilience_test_subscribe nr:test:channel;
--- config
    location /redis { resilience_test_redis; }
    location /messages { resilience_test_messages; }
    location /status { resilience_status; }
--- init
# wait for this nginx's subscription (slow under valgrind)
for (1 .. 100) {
    last if NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PUBSUB",
                                 "NUMSUB", "nr:test:channel") =~ /^1$/m;
    select(undef, undef, undef, 0.05);
}
--- request eval
[
    "GET /redis?cmd=PUBLISH+nr:test:channel+hello",
    "GET /messages",
    "GET /status",
]
--- response_body_like eval
[
    qr/\A\(integer\) 1\n\z/,
    qr/\Anr:test:channel: hello\n1 messages\n\z/,
    qr/nginx_resilience_redis_connected\{worker="0",pid="\d+",connection="subscriber"\} 1\n.*nginx_resilience_redis_messages_total\{worker="0",pid="\d+"\} 1\n/s,
]
--- no_error_log
[error]



=== TEST 10: Redis absent at start: nginx serves, commands fail, the status says disconnected
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_DOWN_PORT connect_timeout=100ms;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
    location /plain { return 200 "served\n"; }
--- request eval
[
    ("GET /redis?cmd=PING") x 10,
    "GET /plain",
    "GET /status",
]
--- response_body_like eval
[
    (qr/\Afailed\n\z/) x 10,
    qr/\Aserved\n\z/,
    qr/"state":"disconnected".*"errors":10,.*"connects":0,/,
]
--- no_error_log
[alert]
[crit]



=== TEST 11: Redis absent: reconnects back off, and one warning, not one per attempt
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_DOWN_PORT connect_timeout=100ms;
--- config
    location /status { resilience_status json; }
--- init
select(undef, undef, undef, 1.6);
--- request
GET /status
--- response_body_like eval
qr/"state":"disconnected".*"connects":0,"reconnects":[2-5],/
--- grep_error_log eval
qr/resilience_redis: 127\.0\.0\.1:\d+ unavailable/
--- grep_error_log_out eval
qr/\Aresilience_redis: 127\.0\.0\.1:\d+ unavailable\n\z/
--- no_error_log
[alert]
[crit]



=== TEST 12: Redis started late: the connection comes up by itself, and the outage ends once it has stayed up
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_LATE_PORT connect_timeout=100ms;
--- config
    location /redis { resilience_test_redis; }
--- init
NR::Redis::redis_later(2, sub { NR::Redis::redis_start($ENV{TEST_NGINX_LATE_PORT}) });
--- request
GET /redis?cmd=PING
--- response_body
failed
--- wait: 8
--- timeout: 12
--- error_log eval
qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ available again after [1-9]\d* failed attempts, connected to 127\.0\.0\.1:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 13: a command still works after the late start (same Redis, new nginx)
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_LATE_PORT connect_timeout=100ms;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- no_error_log
[error]



=== TEST 14: Redis killed mid-run: the command in flight is lost (sent: outcome unknown), the worker reconnects
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_KILL_PORT command_timeout=10s;
--- config
    location /redis { resilience_test_redis; }
--- init
# down when nginx started: an outage (its first line maybe logged before
# this block's), over once the connection has stayed up 2 s and answered;
# then the kill, a second one
NR::Redis::redis_start($ENV{TEST_NGINX_KILL_PORT});
NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/redis?cmd=PING&wait=1");
select(undef, undef, undef, 2.5);
NR::Redis::redis_later(1, sub { NR::Redis::redis_kill($ENV{TEST_NGINX_KILL_PORT}) });
NR::Redis::redis_later(2, sub { NR::Redis::redis_start($ENV{TEST_NGINX_KILL_PORT}) });
--- request
GET /redis?cmd=BLPOP+nr:test:never+8&wait=1
--- response_body
lost
--- timeout: 15
--- wait: 6
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*?resilience_redis: \S+ (?:unavailable: \w+|available again|\w+)/
--- grep_error_log_out eval
qr/\A(?:\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable: connect
)?\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ available again
\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable: connection
\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ available again
\z/
--- error_log eval
[
    qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: connection to 127\.0\.0\.1:\d+ lost: /,
    qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ available again after [1-9]\d* failed attempts/,
]
--- no_error_log
[alert]
[crit]



=== TEST 15: Redis paused: the command timeout fires, and is logged once Redis answers again
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=50ms
                     connect_timeout=2s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
main::wait_connected();
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "CLIENT", "PAUSE", 1500);
--- request
GET /redis?cmd=PING
--- response_body
timed out
--- wait: 2
--- error_log eval
[
    qr/\[info\] .*resilience_redis: command to 127\.0\.0\.1:\d+ timed out after 50 ms/,
    qr/\[warn\] .*resilience_redis: 1 command to 127\.0\.0\.1:\d+ timed out after 50 ms, then it answered again/,
]
--- no_error_log
[alert]
[crit]



=== TEST 16: Redis paused: the timeout is counted, nothing stays pending
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=300ms
                     connect_timeout=2s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
# the previous block's pause must be over first
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PING");
--- request eval
[
    "GET /redis?cmd=CLIENT+PAUSE+1500&wait=1",
    "GET /redis?cmd=PING",
    "GET /status",
]
--- response_body_like eval
[
    qr/\AOK\n\z/,
    qr/\Atimed out\n\z/,
    qr/"timeouts":1,"connects":1,"reconnects":0,"messages":0,"pending":0/,
]
--- no_error_log
[alert]
[crit]



=== TEST 17: no resilience_redis: commands fail, the status says so
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
# leave the shared Redis unpaused for the suites that follow
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PING");
--- request eval
[
    "GET /redis?cmd=PING",
    "GET /status",
]
--- response_body_like eval
[
    qr/\Afailed\n\z/,
    qr/\A\{"version":"[\d.]+","redis":\{"configured":false\},"metrics":\{/,
]
--- no_error_log
[error]



=== TEST 18: a unix socket address is accepted (and fails cleanly when absent)
--- http_config
    resilience_redis unix:/nonexistent/redis.sock;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING
--- response_body
failed
--- error_log
resilience_redis: unix:/nonexistent/redis.sock unavailable
--- no_error_log
[alert]
[crit]



=== TEST 19: several addresses: the first refusing, the next one answering
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_DOWN_PORT,127.0.0.1:$TEST_NGINX_REDIS_PORT
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- error_log eval
qr/\[info\] .*resilience_redis: connect to 127\.0\.0\.1:$ENV{TEST_NGINX_DOWN_PORT} failed: /
--- no_error_log
[error]
[warn]



=== TEST 20: an IPv6 address refusing, then an IPv4 one answering (localhost on Debian 12)
--- http_config
    resilience_redis [::1]:$TEST_NGINX_REDIS_PORT,127.0.0.1:$TEST_NGINX_REDIS_PORT
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- error_log eval
qr/\[info\] .*resilience_redis: connect to \[::1\]:$ENV{TEST_NGINX_REDIS_PORT} failed: /
--- no_error_log
[error]
[warn]



=== TEST 21: every reconnect tries the addresses in turn: the first gone, the next one serves
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_KILL_PORT,127.0.0.1:$TEST_NGINX_REDIS_PORT
                     connect_timeout=2s command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
NR::Redis::redis_start($ENV{TEST_NGINX_KILL_PORT});
--- request eval
[
    "GET /redis?cmd=CONFIG+GET+port&wait=1",
    "GET /redis?cmd=SHUTDOWN+NOSAVE",
    "GET /redis?cmd=CONFIG+GET+port&wait=1",
]
--- response_body eval
[
    "[\"port\", \"$ENV{TEST_NGINX_KILL_PORT}\"]\n",
    "lost\n",
    "[\"port\", \"$ENV{TEST_NGINX_REDIS_PORT}\"]\n",
]
--- no_error_log
[alert]
[crit]



=== TEST 22: Redis stalled: past the worker's cap, commands fail at once as busy; none is left behind
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=500ms
                     connect_timeout=2s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PING");
--- request eval
[
    "GET /redis?cmd=CLIENT+PAUSE+1500&wait=1",
    "GET /redis?cmd=SET+nr:test:stall+0123456789&repeat=20000",
    "GET /status",
]
--- response_body_like eval
[
    qr/\AOK\n\z/,
    qr/\Areply=0 failed=0 timedout=[1-9]\d* busy=[1-9]\d* lost=\d+ busy_ms=\d{1,2}\n\z/,
    qr/"pending":0/,
]
--- no_error_log
[alert]
[crit]



=== TEST 23: Redis stalled: 3 timeouts in a row drop the connection, the commands still in it are lost; one line for it
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=300ms
                     connect_timeout=2s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PING");
main::wait_connected();
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "CLIENT", "PAUSE", 1500);
--- request
GET /redis?cmd=SET+nr:test:stall+x&repeat=10&wait=1
--- response_body
reply=0 failed=0 timedout=3 busy=0 lost=7 busy_ms=0
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*?resilience_redis: \S+ (?:unavailable|available again|\w+)/
--- grep_error_log_out eval
qr/\A\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\z/
--- error_log eval
qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: 3 commands to 127\.0\.0\.1:\d+ timed out in a row, retrying with backoff/
--- no_error_log
[alert]
[crit]



=== TEST 24: Redis stalled under load: the worker's memory stays bounded
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=100ms
                     connect_timeout=300ms;
--- config
    location /redis { resilience_test_redis; }
    location /rss { resilience_test_rss; }
--- init
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PING");
--- request eval
[
    "GET /redis?cmd=PING&wait=1",
    "GET /rss?mark=1",
    "GET /redis?cmd=CLIENT+PAUSE+3000",
    ("GET /redis?cmd=SET+nr:test:stall+0123456789&repeat=5000&wait=1") x 8,
    "GET /rss?max=$main::RssMax",
]
--- response_body_like eval
[
    qr/\APONG\n\z/,
    qr/\Arss \d+ kB\n\z/,
    qr/\AOK\n\z/,
    (qr/\Areply=/) x 8,
    qr/\Agrew by -?\d+ kB, within $main::RssMax kB\n\z/,
]
--- timeout: 20
--- no_error_log
[alert]
[crit]



=== TEST 25: after the stall, commands go through again
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=1s
                     connect_timeout=2s;
--- config
    location /redis { resilience_test_redis; }
--- init
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "PING");
--- request
GET /redis?cmd=SET+nr:test:after+x&repeat=100&wait=1
--- response_body
reply=100 failed=0 timedout=0 busy=0 lost=0 busy_ms=0
--- no_error_log
[error]



=== TEST 26: a unix socket: commands round-trip
--- http_config
    resilience_redis unix:$TEST_NGINX_UNIX_DIR/redis.sock connect_timeout=2s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
my $d = $ENV{TEST_NGINX_UNIX_DIR};
File::Path::make_path($d);
system("redis-server", "--port", 0, "--unixsocket", "$d/redis.sock",
       "--save", "", "--appendonly", "no", "--daemonize", "yes",
       "--dir", $d, "--pidfile", "$d/redis.pid",
       "--logfile", "$d/redis.log") == 0 or die "redis-server failed";
for (1 .. 50) {
    last if -S "$d/redis.sock";
    select(undef, undef, undef, 0.1);
}
--- request eval
[
    "GET /redis?cmd=SET+nr:test:unix+sock&wait=1",
    "GET /redis?cmd=GET+nr:test:unix",
]
--- response_body eval
[
    "OK\n",
    "\"sock\"\n",
]
--- no_error_log
[alert]
[crit]



=== TEST 27: a new connection is not dropped by its first timeout (the timeouts in a row were the lost connection's)
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_KILL_PORT command_timeout=200ms
                     connect_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
--- init
NR::Redis::redis_start($ENV{TEST_NGINX_KILL_PORT});
NR::Redis::redis_later(2, sub {
    NR::Redis::redis_kill($ENV{TEST_NGINX_KILL_PORT});
    NR::Redis::redis_start($ENV{TEST_NGINX_KILL_PORT});
});
--- request eval
[
    "GET /redis?cmd=BLPOP+nr:test:never+30&repeat=2&wait=1",
    "GET /redis?cmd=BLPOP+nr:test:never+30&wait=1",
]
--- response_body eval
[
    "reply=0 failed=0 timedout=2 busy=0 lost=0 busy_ms=0\n",
    "timed out\n",
]
--- wait: 3
--- timeout: 12
--- no_error_log
timed out in a row
[alert]
[crit]



=== TEST 28: Redis killed and back, a subscriber connection open: one line when the outage begins, one when it ends (the subscriber's at info)
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_KILL_PORT connect_timeout=1s
                     command_timeout=1s;
    resilience_test_subscribe nr:test:channel;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
# TEST 27 left this Redis running: this nginx's subscription first
for (1 .. 200) {
    last if NR::Redis::redis_cli($ENV{TEST_NGINX_KILL_PORT}, "PUBSUB",
                                 "NUMSUB", "nr:test:channel") =~ /^1$/m;
    select(undef, undef, undef, 0.05);
}
NR::Redis::redis_kill($ENV{TEST_NGINX_KILL_PORT});
select(undef, undef, undef, 1);
NR::Redis::redis_start($ENV{TEST_NGINX_KILL_PORT});
# the reconnects, and 2 s up: the outage's end
select(undef, undef, undef, 5);
--- request
GET /status
--- response_body_like eval
qr/"state":"connected","subscriber":"connected"/
--- grep_error_log eval
qr/\[(?:warn|error)\] [^\n]*?resilience_redis: \S+(?: \(subscriber\))? (?:unavailable|available again)/
--- grep_error_log_out eval
qr/\A\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ available again\n\z/
--- error_log eval
[
    qr/\[info\] .*resilience_redis: 127\.0\.0\.1:\d+ \(subscriber\) unavailable: connection to 127\.0\.0\.1:\d+ lost/,
    qr/\[info\] .*resilience_redis: 127\.0\.0\.1:\d+ \(subscriber\) available again/,
]
--- timeout: 15
--- no_error_log
[alert]
[crit]
