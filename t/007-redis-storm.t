# The Redis client against a server that accepts connections and turns
# them away at once ("-ERR max number of clients reached", then close):
# reconnects follow the exponential backoff, which starts again from its
# least only once a connection has answered AUTH, SELECT and PING, then
# stayed up 2 s and answered what it was sent; one log line when the
# outage begins, one when it ends.
#
# The server is a small fake Redis (it answers +PONG to every command)
# until it gets SIGUSR1, then refuses until SIGUSR2: nginx starts against
# a healthy server, so that the outage begins after the block's log
# position is taken.
#
# And against a real Redis whose writes are paused while it answers PING
# (CLIENT PAUSE WRITE, what Redis's FAILOVER does to a master): the
# handshake passes, every write stalls, 3 timeouts in a row drop the
# connection; a reconnect counts as healthy only once it has stayed up
# and answered, so the backoff is not reset by each PING.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();
use NR::Redis qw(free_port);
use NR::Net ();

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');


sub fake_redis {
    my ($port, $life) = @_;
    my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                       Listen => 128, ReuseAddr => 1)
        or die "listen on $port: $!";
    my $pid = fork() // die "fork: $!";

    if ($pid) {
        close $listen;
        return $pid;
    }

    NR::Net::detach();

    my $refuse = 0;
    my $sel = IO::Select->new($listen);

    $SIG{USR1} = sub { $refuse = 1 };
    $SIG{USR2} = sub { $refuse = 0 };
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm $life;

    while (1) {
        my @ready = $sel->can_read(0.05);

        if ($refuse) {
            for my $c (grep { $_ != $listen } $sel->handles) {
                $sel->remove($c);
                close $c;
            }
        }

        for my $s (@ready) {
            if ($s == $listen) {
                my $c = $listen->accept or next;
                if ($refuse) {
                    syswrite $c, "-ERR max number of clients reached\r\n";
                    close $c;
                    next;
                }
                $sel->add($c);
                next;
            }

            next unless $sel->exists($s);

            my $n = sysread($s, my $buf, 65536);
            if (!$n) {
                $sel->remove($s);
                close $s;
                next;
            }

            my $cmds = () = $buf =~ /^\*/mg;
            syswrite $s, "+PONG\r\n" x $cmds;
        }
    }
}


$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
$ENV{TEST_NGINX_FAKE1_PORT} = free_port();
$ENV{TEST_NGINX_FAKE2_PORT} = free_port();

our @Fakes = (fake_redis($ENV{TEST_NGINX_FAKE1_PORT}, 120),
              fake_redis($ENV{TEST_NGINX_FAKE2_PORT}, 120));


# until this nginx's connection is up (a slow start, under valgrind)
sub wait_connected {
    for (1 .. 100) {
        my ($st, $body) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT},
                                            "/status");
        return if $body =~ /"connects":1,/;
        select(undef, undef, undef, 0.05);
    }
}

# requests to $path for $secs seconds, one after the other
sub load {
    my ($path, $secs) = @_;
    my $end = Time::HiRes::time() + $secs;
    while (Time::HiRes::time() < $end) {
        NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, $path);
        Time::HiRes::sleep(0.02);
    }
}

END { kill 'TERM', @Fakes if @Fakes }

run_tests();

__DATA__

=== TEST 1: a server that accepts and refuses: reconnects back off, one log line for the outage
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_FAKE1_PORT connect_timeout=1s;
--- config
    location /status { resilience_status json; }
--- init
main::wait_connected();
kill 'USR1', $main::Fakes[0];
select(undef, undef, undef, 4);
--- request
GET /status
--- response_body_like eval
qr/"state":"(disconnected|connecting)".*"connects":1,"reconnects":[1-6],/
--- grep_error_log eval
qr/\[(?:warn|error|crit|alert)\] [^\n]*?resilience_redis: \S+ (?:unavailable|available again|\w+)/
--- grep_error_log_out eval
qr/\A\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\z/
--- error_log eval
[
    qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: connection to 127\.0\.0\.1:\d+ lost: /,
    qr/\[info\] .*resilience_redis: 127\.0\.0\.1:\d+ refused the handshake: ERR max number of clients reached/,
]
--- timeout: 10



=== TEST 2: when the outage ends, one more line, with the count of failed attempts
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_FAKE2_PORT connect_timeout=1s
                     command_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
main::wait_connected();
kill 'USR1', $main::Fakes[1];
select(undef, undef, undef, 2);
kill 'USR2', $main::Fakes[1];
# the reconnect, and 2 s up: the outage's end
select(undef, undef, undef, 5);
--- request
GET /redis?cmd=PING&wait=1
--- response_body
PONG
--- grep_error_log eval
qr/\[(?:warn|error|crit|alert)\] [^\n]*?resilience_redis: \S+ (?:unavailable|available again|\w+)/
--- grep_error_log_out eval
qr/\A\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ available again\n\z/
--- error_log eval
qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ available again after [2-9] failed attempts, connected to 127\.0\.0\.1:\d+/
--- timeout: 15



=== TEST 3: writes paused, PING answered (CLIENT PAUSE WRITE, as Redis's FAILOVER does): reconnects follow the backoff, one line for the outage, one at its end
--- http_config
    resilience_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT command_timeout=50ms
                     connect_timeout=1s;
--- config
    location /redis { resilience_test_redis; }
    location /status { resilience_status json; }
--- init
main::wait_connected();
NR::Redis::redis_cli($ENV{TEST_NGINX_REDIS_PORT}, "CLIENT", "PAUSE", 3000,
                     "WRITE");
main::load("/redis?cmd=SET+nr:test:w+x&repeat=3", 3.5);
# the last reconnect, and 2 s up: the outage's end
select(undef, undef, undef, 6);
--- request
GET /status
--- response_body_like eval
qr/"state":"connected".*"reconnects":[1-7],/
--- grep_error_log eval
qr/\[(?:warn|error|crit|alert)\] [^\n]*?resilience_redis: \S+ (?:unavailable|available again|\w+)/
--- grep_error_log_out eval
qr/\A\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ unavailable\n\[warn\] \d+#\d+: resilience_redis: 127\.0\.0\.1:\d+ available again\n\z/
--- error_log eval
qr/\[warn\] .*resilience_redis: 127\.0\.0\.1:\d+ unavailable: 3 commands to 127\.0\.0\.1:\d+ timed out in a row/
--- no_error_log
[alert]
[crit]
--- timeout: 20
