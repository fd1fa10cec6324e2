package NR::Nginx;

# A second nginx instance for multi-instance suites: same binary and
# modules as the one under test, its own prefix and port, stopped at the
# end of the suite.  And reload_and_wait, for any nginx with a master.

use strict;
use warnings;

use Exporter 'import';
use Cwd qw(getcwd);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(nginx_start nginx_stop reload_and_wait);

my %started;


sub prefix {
    my ($port) = @_;
    return getcwd() . "/t/servroot-nginx-$port";
}


# nginx_start(port => N, http_config => "...", config => "...")
sub nginx_start {
    my (%a) = @_;
    my $port = $a{port};
    my $dir = prefix($port);
    my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';

    nginx_stop($port);
    remove_tree($dir);
    make_path("$dir/logs", "$dir/conf");

    my $modules = join '', map { "load_module $_;\n" }
                           split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

    open my $fh, '>', "$dir/conf/nginx.conf" or die "$dir: $!";
    print $fh $modules, <<"_EOC_";
daemon on;
master_process on;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    $a{http_config}
    server {
        listen 127.0.0.1:$port;
        $a{config}
    }
}
_EOC_
    close $fh;

    system($bin, '-p', "$dir/", '-c', 'conf/nginx.conf') == 0
        or die "the second nginx failed to start (see $dir/logs/error.log)";

    $started{$port} = 1;

    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                      Proto => 'tcp', Timeout => 0.2);
        if ($s) {
            close $s;
            return $dir;
        }
        sleep 0.05;
    }

    die "the second nginx does not answer on port $port";
}


sub nginx_stop {
    my ($port) = @_;
    my $file = prefix($port) . "/logs/nginx.pid";

    open my $fh, '<', $file or return;
    my $pid = <$fh>;
    close $fh;

    return unless $pid && $pid =~ /^(\d+)/;
    $pid = $1;

    kill 'QUIT', $pid;

    for (1 .. 100) {
        last unless kill 0, $pid;
        open my $st, '<', "/proc/$pid/stat" or last;
        my $stat = <$st>;
        close $st;
        last if $stat =~ /^\d+ \(.*\) Z/;
        sleep 0.05;
    }

    kill 'KILL', $pid if kill 0, $pid;
}


# the live (not zombie) children of $pid
sub children {
    my ($pid) = @_;
    my @kids;

    for my $stat (glob "/proc/[0-9]*/stat") {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // '';
        close $fh;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) ([^ZX]) (\d+) /s
                          && $3 == $pid;
    }

    return @kids;
}


# the master's pid, from its pid file
sub master_pid {
    my ($pidfile) = @_;
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    my ($pid) = <$fh> =~ /^(\d+)/ or die "$pidfile: no pid";
    close $fh;
    return $pid;
}


# "nginx -s reload" for the nginx whose master pid is in $pidfile: HUP,
# then wait until every worker of the old configuration is gone and new
# ones run, so that the next request meets the new configuration
sub reload_and_wait {
    my ($pidfile) = @_;
    my $master = master_pid($pidfile);

    my %old = map { $_ => 1 } children($master);
    kill 'HUP', $master or die "HUP $master: $!";

    for (1 .. 200) {
        my @now = children($master);
        return if @now && !grep { $old{$_} } @now;
        sleep 0.05;
    }

    die "nginx $master: the old workers are still there 10 s after HUP";
}


END {
    for my $port (keys %started) {
        nginx_stop($port);
        remove_tree(prefix($port)) unless $ENV{TEST_NGINX_NO_CLEAN};
    }
}

1;
