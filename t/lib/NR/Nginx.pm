package NR::Nginx;

# A second nginx instance for multi-instance suites: same binary and
# modules as the one under test, its own prefix and port, stopped at the
# end of the suite.

use strict;
use warnings;

use Exporter 'import';
use Cwd qw(getcwd);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(nginx_start nginx_stop);

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


END {
    for my $port (keys %started) {
        nginx_stop($port);
        remove_tree(prefix($port)) unless $ENV{TEST_NGINX_NO_CLEAN};
    }
}

1;
