package NR::Redis;

# Private redis-server instances for suites that stop, kill or pause
# Redis: the shared one ($TEST_NGINX_REDIS_PORT) stays up for the others.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);
use File::Path qw(make_path remove_tree);
use Cwd qw(getcwd);

our @EXPORT_OK = qw(free_port redis_start redis_stop redis_kill redis_cli
                    redis_later);

my %dirs;


sub free_port {
    for (1 .. 100) {
        # below the ephemeral range (32768+), where client sockets live
        my $port = 20000 + int(rand(12000));
        my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                         Proto => 'tcp', Timeout => 0.2);
        if (!$sock) {
            return $port;
        }
        close $sock;
    }
    die "no free port";
}


sub redis_dir {
    my ($port) = @_;
    return getcwd() . "/t/servroot-redis-$port";
}


sub redis_start {
    my ($port) = @_;
    my $dir = redis_dir($port);

    make_path($dir);
    system("redis-server", "--port", $port, "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no", "--daemonize", "yes",
           "--dir", $dir, "--pidfile", "$dir/redis.pid",
           "--logfile", "$dir/redis.log") == 0
        or die "redis-server on port $port failed to start";

    for (1 .. 50) {
        return 1 if redis_cli($port, "PING") =~ /PONG/;
        sleep 0.1;
    }

    die "redis-server on port $port does not answer";
}


sub redis_pid {
    my ($port) = @_;
    my $file = redis_dir($port) . "/redis.pid";

    open my $fh, '<', $file or return undef;
    my $pid = <$fh>;
    close $fh;
    chomp $pid if defined $pid;
    return $pid;
}


# a zombie is gone too: where pid 1 does not reap, kill 0 still succeeds
sub alive {
    my ($pid) = @_;

    return 0 unless kill 0, $pid;

    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh>;
    close $fh;

    return $stat !~ /^\d+ \(.*\) Z/;
}


# TERM by default; KILL drops the connection with no goodbye
sub redis_stop {
    my ($port, $signal) = @_;
    my $pid = redis_pid($port);

    return unless $pid;

    unlink redis_dir($port) . "/redis.pid";

    kill $signal || 'TERM', $pid;
    for (1 .. 50) {
        last unless alive($pid);
        sleep 0.1;
    }
    kill 'KILL', $pid if alive($pid);
}


sub redis_kill {
    my ($port) = @_;
    redis_stop($port, 'KILL');
}


sub redis_cli {
    my ($port, @args) = @_;
    my $cmd = join ' ', map { "'$_'" } @args;
    return `redis-cli -p $port $cmd 2>&1`;
}


# runs $code in a detached child after $delay seconds, so that a test can
# act on Redis while nginx is busy answering the block's requests
sub redis_later {
    my ($delay, $code) = @_;
    my $pid = fork();

    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        POSIX::setsid();
        sleep $delay;
        eval { $code->() };
        POSIX::_exit(0);
    }

    return $pid;
}


END {
    for my $dir (glob(getcwd() . "/t/servroot-redis-*")) {
        my ($port) = $dir =~ /(\d+)$/;
        redis_stop($port) if $port;
        remove_tree($dir);
    }
}

1;
