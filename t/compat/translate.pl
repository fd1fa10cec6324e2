#!/usr/bin/perl
#
# t/compat/translate.pl: turns a copy of an anchor's test file (nginx's own
# nginx-tests, lua-resty-limit-traffic's or lua-resty-upstream-healthcheck's
# t/*.t) into the same test for our modules.  Only directive and loading
# lines change; the test code, the requests and the expectations stay as
# the anchor wrote them.
#
#   translate.pl MODE IN OUT [NAME=VALUE ...]
#
# MODE:
#   stock        no translation; only adapts the file to the nginx binary
#                (applied to the baseline copy as well, see adapt())
#   ratelimit    limit_req_* -> ratelimit_*
#   health_check "health_check type=tcp;" first in every http upstream {}
#   discovery    "discovery file=FILE;" first in every http upstream {}
#                (FILE: discovery=PATH, a document with no peers)
#   lua_limit    lua-resty-limit-traffic: lua_package_path, zone lines
#                (and a reset call, when lua-compat has one: reset=EXPR)
#   lua_hc       lua-resty-upstream-healthcheck: lua_package_path and
#                spawn_checker{} -> health_check in the upstream
#   nginx_version=X.Y.Z for adapt()
#
# Every rule is listed in README.md, "Drop-in compatibility".

use strict;
use warnings;

my ($mode, $in, $out, @opts) = @ARGV;

die "usage: $0 MODE IN OUT [NAME=VALUE ...]\n" unless defined $out;

my %opt = map { /^([^=]+)=(.*)$/s ? ($1, $2) : ($_, 1) } @opts;

open my $fh, '<', $in or die "$in: $!\n";
my $text = do { local $/; <$fh> };
close $fh;

my $changes = 0;

$text = adapt($text);

if ($mode eq 'stock') {
    # nothing else

} elsif ($mode eq 'ratelimit') {
    $text = nginx_conf_blocks($text, \&ratelimit);

} elsif ($mode eq 'health_check') {
    $text = nginx_conf_blocks($text, sub {
        upstream_insert($_[0], 'health_check type=tcp;')
    });

} elsif ($mode eq 'discovery') {
    die "discovery mode needs discovery=PATH\n" unless $opt{discovery};
    $text = nginx_conf_blocks($text, sub {
        upstream_insert($_[0], "discovery file=$opt{discovery};")
    });

} elsif ($mode eq 'lua_limit') {
    $text = lua_limit($text);

} elsif ($mode eq 'lua_hc') {
    $text = lua_hc($text);

} else {
    die "unknown mode $mode\n";
}

open $fh, '>', $out or die "$out: $!\n";
print $fh $text;
close $fh;

print STDERR "$out: $changes line(s) translated\n" if $opt{verbose};

exit 0;


# The baseline and our copy both get this: anchor files written for a newer
# nginx than the binary under test.  nginx-tests moved to "http2 on;"
# (nginx 1.25.1) in 2025; older binaries want "listen ... http2;".

sub adapt {
    my ($t) = @_;
    my $v = $opt{nginx_version} || '0';

    return $t unless version_lt($v, '1.25.1');

    # a server {} with "http2 on;": the flag goes on its listen lines
    my @lines = split /^/, $t;
    my (@stack, @listen);

    for my $i (0 .. $#lines) {
        (my $code = $lines[$i]) =~ s/#.*//;

        if ($code =~ /^\s*listen\s/ && @listen) {
            push @{ $listen[-1] }, $i;
        }

        if ($code =~ /^\s*http2\s+on\s*;\s*$/ && @listen) {
            $lines[$i] = '';
            $lines[$_] =~ s/(\s*;)/ http2$1/ for @{ $listen[-1] };
            next;
        }

        while ($code =~ /([^{};]*)([{};])/g) {
            my ($words, $c) = ($1, $2);

            if ($c eq '{') {
                my ($name) = $words =~ /^\s*(\S+)/;
                push @stack, $name // '';
                push @listen, [] if ($name // '') eq 'server';
            } elsif ($c eq '}') {
                my $name = pop @stack;
                pop @listen if defined $name && $name eq 'server';
            }
        }
    }

    $t = join '', @lines;

    return $t;
}


sub version_lt {
    my ($a, $b) = @_;
    my @a = split /\./, $a;
    my @b = split /\./, $b;

    while (@a || @b) {
        my ($x, $y) = (shift(@a) // 0, shift(@b) // 0);
        return 1 if $x < $y;
        return 0 if $x > $y;
    }

    return 0;
}


# nginx-tests keep their configuration in Perl here-documents
# (<<'EOF' ... EOF); only their lines are touched.

sub nginx_conf_blocks {
    my ($t, $fn) = @_;

    $t =~ s{(<<\s*'?(\w+)'?[^\n]*\n)(.*?\n)(\2\n)}{
        my ($open, $body, $close) = ($1, $3, $4);
        $open . $fn->($body) . $close;
    }gse;

    return $t;
}


# splits a directive's arguments, keeping quoted ones whole
sub args {
    my ($s) = @_;
    my @a;

    while ($s =~ /\G\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s;]+)/gc) {
        push @a, $1;
    }

    return @a;
}


sub ratelimit {
    my ($conf) = @_;
    my @out;
    my $status_done = 0;

    for my $line (split /^/, $conf) {
        if ($line =~ /^(\s*)limit_req_zone\s+(.*?);(.*)$/s) {
            my ($ind, $rest, $tail) = ($1, $2, $3);
            my ($zone, $size, $rate, @key, @more);

            for my $a (args($rest)) {
                if ($a =~ /^zone=([^:]+):(.+)$/) {
                    ($zone, $size) = ($1, $2);
                } elsif ($a =~ /^rate=(.+)$/) {
                    $rate = $1;
                } elsif ($a eq 'sync') {
                    push @more, 'sync=redis';
                } else {
                    push @key, $a;
                }
            }

            my $key = join ' ', @key;
            $key = $key =~ /\s/ ? qq{"key=$key"} : "key=$key";
            $key = "key=$1" if $key =~ /^key="([^"\s]*)"$/;

            $line = "${ind}ratelimit_zone $zone $key size=$size rate=$rate"
                    . join('', map { " $_" } @more) . ";$tail";
            $changes++;

            # limit_req's default status is 503, ours 429 (README,
            # "Migrating from limit_req"): a faithful migration says 503
            unless ($status_done++) {
                $line .= "\n" unless $line =~ /\n$/;
                $line .= "${ind}ratelimit_status 503;\n";
            }

        } elsif ($line =~ /^(\s*)limit_req\s+(.*?);(.*)$/s) {
            my ($ind, $rest, $tail) = ($1, $2, $3);
            my ($zone, @more);

            for my $a (args($rest)) {
                if ($a =~ /^zone=(.+)$/) {
                    $zone = $1;
                } else {
                    push @more, $a;
                }
            }

            $line = "${ind}ratelimit $zone" . join('', map { " $_" } @more)
                    . ";$tail";
            $changes++;

        } elsif ($line =~ s/^(\s*)limit_req_(status|log_level|dry_run)\b
                            /$1ratelimit_$2/x)
        {
            $changes++;
        }

        $changes++ if $line =~ s/\$limit_req_status\b/\$ratelimit_status/g;

        push @out, $line;
    }

    return join '', @out;
}


# the directive goes first in every upstream {} of the http {} context, so
# that a balancing method or keepalive inside comes after it (README)
sub upstream_insert {
    my ($conf, $directive) = @_;
    my @stack;
    my @out;

    for my $line (split /^/, $conf) {
        push @out, $line;

        (my $code = $line) =~ s/#.*//;
        $code =~ s/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/""/g;

        my $stmt = '';

        while ($code =~ /([^{};]*)([{};])/g) {
            my ($words, $c) = ($1, $2);

            if ($c eq '{') {
                my ($name) = $words =~ /^\s*(\S+)/;
                $name //= '';

                if ($name eq 'upstream' && grep({ $_ eq 'http' } @stack)) {
                    my ($ind) = $line =~ /^(\s*)/;
                    push @out, "$ind    $directive\n";
                    $changes++;
                }

                push @stack, $name;

            } elsif ($c eq '}') {
                pop @stack;
            }
        }
    }

    return join '', @out;
}


# lua-resty-limit-traffic: each lua_shared_dict that a limiter of the block
# opens becomes a ratelimit_zone of that name; its rate is the one the
# block's first new() asks for (the shims want the zone's rate).

sub lua_limit {
    my ($t) = @_;
    my ($head, $data) = split /^__DATA__\n/m, $t, 2;

    $head = lua_path($head);

    return $head unless defined $data;

    my @blocks = split /(?=^=== TEST)/m, $data;
    my %first;

    for my $b (@blocks) {
        my (%kind, %zone);

        while ($b =~ /local\s+(\w+)\s*=\s*require\s*\(?\s*["']resty\.limit\.(req|count|conn)["']/g) {
            $kind{$1} = $2;
        }

        while ($b =~ /\b(\w+)\.new\(\s*["']([\w-]+)["']\s*,\s*([^,\)]+)(?:,\s*([^,\)]+))?/g) {
            my ($var, $dict, $a1, $a2) = ($1, $2, $3, $4);
            next unless $kind{$var};
            next if $zone{$dict};
            $zone{$dict} = [$kind{$var}, $a1, $a2];
            $first{$dict} //= $zone{$dict};
        }

        # sections are "--- name [filters]" then their text; in an eval
        # section written as a Perl "..." or qq{} string, $ must be \$
        my @sec = split /(?=^--- )/m, $b;

        for my $sec (@sec) {
            my ($hdr, $body) = $sec =~ /\A([^\n]*\n?)(.*)\z/s;
            my $perl = $hdr =~ /^--- \S+.*\beval\b/
                       && $body =~ /\A\s*(?:qq\s*\W|")/;

            $body =~ s{^([ \t]*)lua_shared_dict\s+([\w-]+)\s+(\S+)\s*;}{
                my ($ind, $dict, $size) = ($1, $2, $3);
                my $z = $zone{$dict};
                my $line = "${ind}lua_shared_dict $dict $size;";

                if ($z) {
                    $changes++;
                    $line = $ind . zone_line($dict, $size, @$z);
                    $line =~ s/\$/\\\$/g if $perl;
                }

                $line;
            }gme;

            $sec = $hdr . $body;
        }

        $b = join '', @sec;

        if ($opt{reset}) {
            $changes += $b =~ s{ngx\.shared(?:\.|\[\s*["'])([\w-]+)(?:["']\s*\])?:flush_all\(\)}{
                my $z = $1;
                $zone{$z} ? sprintf($opt{reset}, $z)
                          : "ngx.shared.$z:flush_all()";
            }ge;
        }
    }

    # a lua_shared_dict of the file's head serves every block: its rate is
    # the one the first block asks for (in an interpolating here-document,
    # $ is \$)
    my $interp = $head !~ /<<\s*'/;

    $head =~ s{^([ \t]*)lua_shared_dict\s+([\w-]+)\s+(\S+)\s*;}{
        my ($ind, $dict, $size) = ($1, $2, $3);
        my $z = $first{$dict};
        my $line = "${ind}lua_shared_dict $dict $size;";

        if ($z) {
            $changes++;
            $line = $ind . zone_line($dict, $size, @$z);
            $line =~ s/\$/\\\$/g if $interp;
        }

        $line;
    }gme;

    if ($opt{reset}) {
        for my $b (@blocks) {
            $changes += $b =~ s{ngx\.shared(?:\.|\[\s*["'])([\w-]+)(?:["']\s*\])?:flush_all\(\)}{
                my $z = $1;
                $first{$z} ? sprintf($opt{reset}, $z)
                           : "ngx.shared.$z:flush_all()";
            }ge;
        }
    }

    return join '', $head, "__DATA__\n", @blocks;
}


sub zone_line {
    my ($dict, $size, $kind, $a1, $a2) = @_;
    my $rate = '1r/s';
    my $alg = '';

    $a1 =~ s/\s+//g if defined $a1;
    $a2 =~ s/\s+//g if defined $a2;

    if ($kind eq 'req' && defined $a1 && $a1 =~ /^[\d.]+$/) {
        $rate = "${a1}r/s";

    } elsif ($kind eq 'count') {
        $alg = ' algorithm=sliding_window';

        if (defined $a1 && $a1 =~ /^\d+$/ && defined $a2 && $a2 =~ /^\d+$/) {
            my %unit = (1 => 's', 60 => 'm', 3600 => 'h', 86400 => 'd');

            # ratelimit's rates are per s, m, h or d: another window keeps
            # the limit per second, and the shim says the window differs
            $rate = $unit{$a2} ? "${a1}r/$unit{$a2}" : "${a1}r/s";
        }
    }

    return "ratelimit_zone $dict key=\$binary_remote_addr size=$size"
           . " rate=$rate$alg;";
}


# lua_package_path: ours (the shims first), then what the anchor had, so
# that modules we do not shim (resty.limit.traffic, resty.lock) still come
# from the anchor
sub lua_path {
    my ($t) = @_;
    my $lib = $opt{lua_compat} or die "lua modes need lua_compat=DIR\n";

    $changes += $t =~ s{lua_package_path\s+"}{lua_package_path "$lib/compat/?.lua;$lib/?.lua;};

    return $t;
}


# lua-resty-upstream-healthcheck: spawn_checker{...} in init_worker_by_lua
# becomes health_check in the upstream it names; the call stays (the shim's
# spawn_checker() checks that the upstream has health_check and returns
# true).  Only literal arguments translate: upstream, type, http_req's
# path, interval (ms), timeout (ms), fall, rise, valid_statuses.

sub lua_hc {
    my ($t) = @_;
    my ($head, $data) = split /^__DATA__\n/m, $t, 2;

    $head = lua_path($head);

    return $head unless defined $data;

    my @blocks = split /(?=^=== TEST)/m, $data;

    for my $b (@blocks) {
        my %hc;

        while ($b =~ /spawn_checker\s*\(?\s*(\{(?:[^{}]++|(?1))*\})/gs) {
            my $args = substr($1, 1, -1);
            my %a;

            while ($args =~ /(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\{[^}]*\}|[^,\n]+)/g) {
                my ($k, $v) = ($1, $2);
                $v =~ s/\s+$//;
                $a{$k} = $v;
            }

            my $up = $a{upstream} // next;
            $up =~ s/^["']|["']$//g;

            # lua-resty-upstream-healthcheck's defaults, written out:
            # interval 1000 ms, timeout 1000 ms, fall 5, rise 2, and any
            # status passes unless valid_statuses says which
            my @p;
            my $type = ($a{type} // '') =~ /https/ ? 'https' : 'http';
            push @p, "type=$type";

            if (defined $a{http_req} && $a{http_req} =~ /^["']?\w+\s+(\S+)/)
            {
                push @p, "uri=$1";
            }

            push @p, "port=$1" if ($a{port} // '') =~ /^(\d+)$/;

            my %num;
            for my $k (qw(interval timeout fall rise)) {
                $num{$k} = $1 if ($a{$k} // '') =~ /^(\d+)\s*(?:--.*)?$/;
            }

            push @p, "interval=" . ($num{interval} // 1000) . "ms";
            push @p, "timeout=" . ($num{timeout} // 1000) . "ms";
            push @p, "fails=" . ($num{fall} // 5);
            push @p, "passes=" . ($num{rise} // 2);

            my @st = (100 . '-' . 599);

            if (($a{valid_statuses} // '') =~ /^\{([\d,\s]+)\}$/) {
                @st = grep { length } split /[,\s]+/, $1;
            }

            my $name = "compat_$up";
            $name =~ s/\W/_/g;
            push @p, "match=$name";
            my $match = "health_check_match $name { status @st; }\n";

            $hc{$up} = [join(' ', @p), $match];
        }

        for my $up (keys %hc) {
            my ($params, $match) = @{ $hc{$up} };

            my $open = '{';

            $changes += $b =~ s/^([ \t]*)upstream\s+\Q$up\E\s*\{[ \t]*\n/
                "$1$match$1upstream $up $open\n$1    health_check $params;\n"
            /me;
        }
    }

    return join '', $head, "__DATA__\n", @blocks;
}
