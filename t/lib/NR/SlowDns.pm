package NR::SlowDns;

# A detached UDP DNS responder on 127.0.0.1:$port that answers every query
# with one A record, 127.0.0.1, after $delay seconds (each query in its own
# child, so that a slow answer does not hold the next), for $life seconds.
# For tests of what happens while nginx waits on its resolver.

use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use NR::Net ();

sub start {
    my ($port, $delay, $life) = @_;

    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                  Proto => 'udp')
        or die "udp 127.0.0.1:$port: $!";

    my $pid = fork() // die "fork: $!";

    if ($pid) {
        close $s;
        return $pid;
    }

    NR::Net::detach();

    my $end = time + $life;

    while (time < $end) {
        my $from = $s->recv(my $q, 512) // next;
        next unless length $q > 12;

        my $kid = fork();
        next if $kid || !defined $kid;

        sleep $delay;

        # the query's id and question, one answer pointing at the name
        my $resp = substr($q, 0, 2) . pack('nnnnn', 0x8180, 1, 1, 0, 0)
                 . substr($q, 12)
                 . pack('nnnNn', 0xc00c, 1, 1, 0, 4) . pack('C4', 127, 0, 0, 1);

        $s->send($resp, 0, $from);
        POSIX::_exit(0);
    }

    POSIX::_exit(0);
}

1;
