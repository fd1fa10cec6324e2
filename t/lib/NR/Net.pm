package NR::Net;

# Small network helpers for suites: plain HTTP requests from init code,
# a slow upstream, and a client that holds a request open.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use IO::Select;

our @EXPORT_OK = qw(http_get http_put http_burst slow_server hold_request
                    arrival_server blackhole_server path_delay_server);


# GET $path from 127.0.0.1:$port, with optional header lines
# ("Name: value"), returns (status, body)
sub http_get {
    my ($port, $path, @headers) = @_;
    return http_request($port, "GET", $path, undef, @headers);
}


# PUT $body to $path, returns (status, body)
sub http_put {
    my ($port, $path, $body) = @_;
    return http_request($port, "PUT", $path, $body);
}


# $n GET $path sent at once on $n connections (optional extra header
# lines in $hdr); returns one [status, headers, seconds] per request,
# in the order they were sent
sub http_burst {
    my ($port, $path, $n, $hdr) = @_;
    my (@socks, @out, %buf, %done);
    $hdr //= "";

    for my $i (0 .. $n - 1) {
        my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                         Proto => 'tcp', Timeout => 5)
            or die "connect to $port: $!";
        push @socks, $sock;
    }

    my $start = time;
    print {$_} "GET $path HTTP/1.0\r\nHost: localhost\r\n$hdr\r\n" for @socks;

    my $sel = IO::Select->new(@socks);
    my %index = map { ("$socks[$_]" => $_) } 0 .. $#socks;

    while ($sel->count && time - $start < 10) {
        for my $s ($sel->can_read(1)) {
            my $i = $index{"$s"};
            my $r = sysread($s, my $chunk, 65536);
            if ($r) {
                $buf{$i} .= $chunk;
                next;
            }
            $done{$i} = time - $start;
            $sel->remove($s);
            close $s;
        }
    }

    for my $i (0 .. $n - 1) {
        my $resp = $buf{$i} // '';
        my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
        my ($head) = $resp =~ m{\A(.*?)\r\n\r\n}s;
        push @out, [$status // 0, $head // '', $done{$i} // 99];
    }

    return @out;
}


sub http_request {
    my ($port, $method, $path, $body, @headers) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Proto => 'tcp', Timeout => 5)
        or die "connect to $port: $!";

    print $sock "$method $path HTTP/1.0\r\nHost: localhost\r\n";
    print $sock "$_\r\n" for @headers;
    print $sock "Content-Length: ", length($body), "\r\n" if defined $body;
    print $sock "\r\n";
    print $sock $body if defined $body;

    local $/;
    my $resp = <$sock> // '';
    close $sock;

    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($rbody) = $resp =~ m{\r\n\r\n(.*)\z}s;

    return ($status // 0, $rbody // "");
}


# in a forked helper: its own session, and none of the suite's pipes (its
# output, and Test::Builder's copies of it) held open, since prove reads
# until they close: a helper living 8 s would make the suite last 8 s
sub detach {
    POSIX::setsid();
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';

    for my $fd (map { m{/(\d+)\z} ? $1 : () } glob '/proc/self/fd/*') {
        my $to = readlink "/proc/self/fd/$fd";
        POSIX::close($fd) if defined $to && $to =~ /^pipe:/;
    }
}


# a detached HTTP server on $port answering 200 "slow\n" after $delay
# seconds to every request, for $life seconds
sub slow_server {
    my ($port, $delay, $life) = @_;
    my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                       Listen => 32, ReuseAddr => 1)
        or die "listen on $port: $!";
    my $pid = fork() // die "fork: $!";

    if ($pid) {
        close $listen;
        return $pid;
    }

    detach();
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm $life;

    while (my $c = $listen->accept) {
        if (fork() == 0) {
            my $buf = '';
            while ($buf !~ /\r\n\r\n/) {
                my $n = sysread($c, $buf, 4096, length $buf);
                last unless $n;
            }
            sleep $delay;
            print $c "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
                     "Connection: close\r\n\r\nslow\n";
            close $c;
            POSIX::_exit(0);
        }
        close $c;
    }

    POSIX::_exit(0);
}


# a detached client sending GET $path to $port and holding the
# connection open for $hold seconds
sub hold_request {
    my ($port, $path, $hold) = @_;
    my $pid = fork() // die "fork: $!";

    return $pid if $pid;

    detach();
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Proto => 'tcp', Timeout => 5);
    if ($sock) {
        print $sock "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
        sleep $hold;
        close $sock;
    }

    POSIX::_exit(0);
}


# a detached server on $port, for $life seconds, that runs $serve->($c)
# in a child of its own for each connection $c it accepts (the helpers
# below answer through it)
sub forked_server {
    my ($port, $life, $serve) = @_;
    my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                       Listen => 32, ReuseAddr => 1)
        or die "listen on $port: $!";
    my $pid = fork() // die "fork: $!";

    if ($pid) {
        close $listen;
        return $pid;
    }

    detach();
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm $life;

    while (my $c = $listen->accept) {
        if (fork() == 0) {
            $serve->($c);
            close $c;
            POSIX::_exit(0);
        }
        close $c;
    }

    POSIX::_exit(0);
}


# a detached HTTP server on $port that appends a line to $file the moment
# a request's first bytes arrive ("<unix time, ms> <request line>"), reads
# the request (its body by Content-Length), waits $delay seconds and
# answers 200 "ok\n", for $life seconds; $file is emptied first
sub arrival_server {
    my ($port, $file, $life, $delay) = @_;
    open my $fh, '>', $file or die "$file: $!";
    close $fh;

    return forked_server($port, $life, sub {
        my ($c) = @_;
        my $buf = '';
        my $n = sysread($c, $buf, 4096);
        return unless $n;

        my $at = int(time * 1000);
        open my $log, '>>', $file or return;
        my ($line) = $buf =~ /\A([^\r\n]*)/;
        print $log "$at $line\n";
        close $log;

        while ($buf !~ /\r\n\r\n/) {
            $n = sysread($c, $buf, 4096, length $buf);
            return unless $n;
        }

        my ($len) = $buf =~ /^Content-Length:\s*(\d+)/mi;
        my $want = index($buf, "\r\n\r\n") + 4 + ($len // 0);
        while (length $buf < $want) {
            $n = sysread($c, $buf, 4096, length $buf);
            return unless $n;
        }

        sleep $delay if $delay;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",
                 "Connection: close\r\n\r\nok\n";
    });
}


# a detached listener on $port whose accept queue is kept full (it never
# accepts), so that a connect to it hangs, for $life seconds
sub blackhole_server {
    my ($port, $life) = @_;
    my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                       Listen => 1, ReuseAddr => 1)
        or die "listen on $port: $!";
    my $pid = fork() // die "fork: $!";

    if ($pid) {
        close $listen;
        return $pid;
    }

    detach();
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm $life;

    my @fill;
    for (1 .. 4) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                      Proto => 'tcp', Blocking => 0);
        push @fill, $s if $s;
    }

    sleep $life;
    POSIX::_exit(0);
}


# a detached HTTP server on $port answering 200 "<path>\n" to every
# request, after the delay (seconds) that %$delays gives a segment of its
# path ("/t/slow": $delays->{slow}), none when no segment is there, for
# $life seconds
sub path_delay_server {
    my ($port, $life, $delays) = @_;

    return forked_server($port, $life, sub {
        my ($c) = @_;
        my $buf = '';
        while ($buf !~ /\r\n\r\n/) {
            my $n = sysread($c, $buf, 4096, length $buf);
            return unless $n;
        }

        my ($path) = $buf =~ m{\A\S+ (\S+)};
        $path //= '/';
        my $delay = 0;
        for my $seg (split m{/}, $path) {
            $delay = $delays->{$seg} if $delays->{$seg};
        }

        sleep $delay if $delay;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: ", length($path) + 1,
                 "\r\nConnection: close\r\n\r\n$path\n";
    });
}

1;
