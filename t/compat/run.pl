#!/usr/bin/perl
#
# t/compat/run.pl: the anchors' own test suites, first as their authors
# run them against stock nginx (the baseline), then translated by
# t/compat/translate.pl for our modules; prints one markdown table.
#
#   run.pl ANCHORS-DIR [SUITE ...]
#
# ANCHORS-DIR holds the fetched repositories side by side, under their
# names: nginx-tests, lua-resty-limit-traffic,
# lua-resty-upstream-healthcheck, test-nginx (the real Test::Nginx, which
# the Lua suites use).  Nothing is written there: every file is copied to
# $COMPAT_WORK (build/compat) first.
#
# Environment (build.sh compat sets it): COMPAT_ROOT (the project),
# COMPAT_NGINX (the nginx binary), COMPAT_MODULES (our .so files in load
# order), COMPAT_WORK (scratch), COMPAT_TIMEOUT (seconds per file, 600).

use strict;
use warnings;

use FindBin;
use File::Basename qw(basename);
use File::Path qw(make_path remove_tree);
use POSIX qw(strftime);

# needs: the other anchors (folders of ANCHORS-DIR) a suite uses
my %SUITES = (
    limit_req => {
        anchor => 'nginx-tests',
        kind   => 'nginx-tests',
        mode   => 'ratelimit',
        files  => [qw(limit_req.t limit_req2.t limit_req_delay.t
                      limit_req_dry_run.t)],
    },
    upstream_hc => {
        anchor => 'nginx-tests',
        kind   => 'nginx-tests',
        mode   => 'health_check',
        files  => 'UPSTREAM',
    },
    upstream_discovery => {
        anchor => 'nginx-tests',
        kind   => 'nginx-tests',
        mode   => 'discovery',
        files  => 'UPSTREAM',
    },
    lua_limit => {
        anchor => 'lua-resty-limit-traffic',
        kind   => 'lua',
        mode   => 'lua_limit',
        files  => 't/*.t',
        needs  => [qw(test-nginx)],
    },
    lua_hc => {
        anchor => 'lua-resty-upstream-healthcheck',
        kind   => 'lua',
        mode   => 'lua_hc',
        files  => 't/*.t',
        needs  => [qw(test-nginx lua-resty-lock lua-upstream-nginx-module
                      lua-nginx-module)],
    },
);

my @ORDER = qw(limit_req upstream_hc upstream_discovery lua_limit lua_hc);

my @UPSTREAM = qw(upstream.t upstream_least_conn.t upstream_keepalive.t
    upstream_zone.t upstream_zone_ssl.t upstream_max_conns.t
    proxy_next_upstream.t proxy_next_upstream_tries.t grpc_next_upstream.t
    proxy_ssl.t proxy_ssl_keepalive.t proxy_ssl_name.t proxy_ssl_verify.t
    upstream_random.t upstream_hash.t upstream_ip_hash.t);

my $anchors = shift @ARGV
    or die "usage: $0 ANCHORS-DIR [" . join(' | ', @ORDER) . " ...]\n";
$anchors = absolute($anchors);

my @suites = @ARGV ? @ARGV : @ORDER;

for (@suites) {
    die "unknown suite $_ (one of: @ORDER)\n" unless $SUITES{$_};
}

my $root = $ENV{COMPAT_ROOT} or die "COMPAT_ROOT not set (use build.sh compat)\n";
my $nginx = $ENV{COMPAT_NGINX} || '/usr/sbin/nginx';
my @ours = map { absolute($_) } split ' ', ($ENV{COMPAT_MODULES} || '');
my $work = absolute($ENV{COMPAT_WORK} || "$root/build/compat");
my $timeout = $ENV{COMPAT_TIMEOUT} || 600;
# beside this script, so that another worktree's modules can be run with
# COMPAT_ROOT=<that worktree> perl <this worktree>/t/compat/run.pl ...
my $translate = "$FindBin::Bin/translate.pl";

# COMPAT_REPORT_ONLY=1: runs nothing, prints the table of the last run
my $report_only = $ENV{COMPAT_REPORT_ONLY};

die "no modules in COMPAT_MODULES\n" unless @ours;

my $V = `$nginx -V 2>&1`;
my ($nginx_version) = $V =~ m{nginx version: \S+/([\d.]+)};
my ($modules_path) = $V =~ /--modules-path=(\S+)/;
$modules_path //= '/usr/lib/nginx/modules';

my $root_user = $> == 0;
my %done_stock;
my @rows;
my $t0 = time;

make_path($work);

for my $suite (@suites) {
    my $s = $SUITES{$suite};
    my $adir = "$anchors/$s->{anchor}";

    my @missing = grep { !-d "$anchors/$_" }
                  $s->{anchor}, @{ $s->{needs} || [] };

    if (@missing) {
        warn "compat: suite $suite skipped: fetch @missing into $anchors "
             . "first (t/compat/README.md)\n";
        push @rows, { suite => $suite, missing => 1,
                      file => "(not fetched: @missing)" };
        next;
    }

    my @files = files($s, $adir);
    my $sdir = "$work/$suite";

    unless ($report_only) {
        remove_tree("$sdir/ours");
        make_path("$sdir/ours");
    }

    # the baseline is the same for both upstream runs: run it once
    my $stockdir = "$work/stock-$s->{anchor}";

    # COMPAT_REUSE_STOCK=1 keeps the last baseline (same anchors, same
    # nginx): only ours runs again
    my $reuse = $ENV{COMPAT_REUSE_STOCK} && -d $stockdir;

    # once per run a fresh copy (unless reused); then each suite adds the
    # files it needs that are not there yet
    my $again = $done_stock{$stockdir} || ($reuse && -d $stockdir)
                || $report_only;

    unless ($again) {
        remove_tree($stockdir);
        make_path($stockdir);
        $done_stock{$stockdir} = {};
    }

    my @new = grep {
        !$done_stock{$stockdir}{$_}
        && !($reuse && -f "$stockdir/" . basename($_) . ".tap")
    } @files;

    prepare($s, $adir, $stockdir, 'stock', \@new, $again ? 'again' : ())
        if @new && !$report_only;

    my @extra;

    if ($s->{mode} eq 'discovery') {
        my $doc = "$sdir/empty-peers.json";
        write_file($doc, qq({"peers": []}\n));
        push @extra, "discovery=$doc";
    }

    if ($s->{mode} eq 'lua_limit') {
        my $reset = lua_reset();
        push @extra, "reset=$reset" if $reset;
    }

    prepare($s, $adir, "$sdir/ours", $s->{mode}, \@files, @extra)
        unless $report_only;

    for my $f (@files) {
        if ($report_only) {
            push @rows, compare($suite, $f, inspect($stockdir, $f),
                                inspect("$sdir/ours", $f));
            next;
        }

        my $stock = $done_stock{$stockdir}{$f}
                    //= $reuse && -f "$stockdir/" . basename($f) . ".tap"
                        ? inspect($stockdir, $f)
                        : run_file($s, $stockdir, $f, 'stock');
        my $our = run_file($s, "$sdir/ours", $f, 'ours');

        push @rows, compare($suite, $f, $stock, $our);
    }
}

report(\@rows);

exit 0;


sub absolute {
    my ($p) = @_;
    return $p if $p =~ m{^/};
    chomp(my $cwd = `pwd`);
    return "$cwd/$p";
}


sub files {
    my ($s, $adir) = @_;

    if (ref $s->{files}) {
        return @{ $s->{files} };
    }

    if ($s->{files} eq 'UPSTREAM') {
        return @UPSTREAM;
    }

    return map { "t/" . basename($_) } sort glob("$adir/$s->{files}");
}


sub prepare {
    my ($s, $adir, $dst, $mode, $files, @extra) = @_;
    my $again = @extra && $extra[-1] eq 'again' ? pop @extra : '';

    if ($again) {
        # the copy is there: only files to add

    } elsif ($s->{kind} eq 'nginx-tests') {
        system('cp', '-r', "$adir/lib", "$dst/lib") == 0
            or die "cp $adir/lib failed\n";

    } else {
        system("cd '$adir' && tar cf - --exclude=.git --exclude=servroot . | "
               . "(cd '$dst' && tar xf -)") == 0
            or die "copy of $adir failed\n";
    }

    # lua-resty-upstream-healthcheck's suite finds resty.lock in
    # $pwd/../lua-resty-lock
    if ($mode =~ /^lua_hc$|^stock$/ && -d "$anchors/lua-resty-lock/lib"
        && $s->{mode} eq 'lua_hc')
    {
        (my $parent = $dst) =~ s{/[^/]+$}{};
        symlink("$anchors/lua-resty-lock/lib", "$parent/lua-resty-lock")
            unless -e "$parent/lua-resty-lock";
    }

    for my $f (@$files) {
        next unless -f "$adir/$f";

        system($^X, $translate, $mode, "$adir/$f", "$dst/$f",
               "nginx_version=$nginx_version",
               "lua_compat=$root/lua-compat/lib", @extra) == 0
            or die "translate $mode $f failed\n";
    }
}


# the reset call for the Lua suites' ngx.shared.<dict>:flush_all(), when
# lua-compat has one: resty.resilience.limit.reset(zone) (or flush_all)
sub lua_reset {
    # COMPAT_LUA_RESET overrides: a Lua statement, %s the zone's name
    return $ENV{COMPAT_LUA_RESET} if defined $ENV{COMPAT_LUA_RESET};

    my $lib = "$root/lua-compat/lib/resty/resilience/limit.lua";

    open my $fh, '<', $lib or return undef;
    my $src = do { local $/; <$fh> };
    close $fh;

    for my $fn (qw(reset flush_all flush)) {
        if ($src =~ /^function\s+_M\.$fn\s*\(/m) {
            return qq{require("resty.resilience.limit").$fn("%s")};
        }
    }

    return undef;
}


sub run_file {
    my ($s, $dir, $f, $side) = @_;
    my $log = "$dir/" . basename($f);
    my %env;

    return { missing => 1 } unless -f "$dir/$f";

    # each file's nginx prefixes (kept: TEST_NGINX_LEAVE) in a folder of
    # its own, for the error logs
    my $tmp = "$dir/tmp/" . basename($f, '.t');
    remove_tree($tmp);
    make_path($tmp);

    if ($s->{kind} eq 'nginx-tests') {
        my $g = $root_user ? "user root;\n" : '';

        if ($side eq 'ours') {
            $g .= "load_module $_;\n" for @ours;
        }

        %env = (
            TEST_NGINX_BINARY  => $nginx,
            TEST_NGINX_MODULES => $modules_path,
            TEST_NGINX_GLOBALS => $g,
            TEST_NGINX_LEAVE   => 1,
            TMPDIR             => $tmp,
        );

    } else {
        my @load = ("$modules_path/ndk_http_module.so",
                    "$modules_path/ngx_http_lua_module.so");

        # lua-resty-upstream-healthcheck's suite: echo_sleep and
        # ngx.upstream, on both sides (only the checker changes)
        push @load, "$modules_path/ngx_http_echo_module.so",
                    lua_upstream() if $s->{mode} eq 'lua_hc';

        push @load, @ours if $side eq 'ours';

        %env = (
            TEST_NGINX_BINARY       => $nginx,
            TEST_NGINX_LOAD_MODULES => join(' ', @load),
            TEST_NGINX_SERVER_PORT  => free_port(),
            # the default, t/servroot: https.t finds its certificates
            # from there (conf/../../cert)
            TEST_NGINX_SERVROOT     => "$dir/t/servroot",
            TEST_NGINX_NO_SHUFFLE   => 1,
            TMPDIR                  => $tmp,
        );
    }

    my $inc = $s->{kind} eq 'lua' ? "-I$anchors/test-nginx/lib" : '';
    my $envs = join ' ', map { "$_=" . shq($env{$_}) } sort keys %env;
    my $start = time;

    print STDERR "compat: $side $f ...";

    system("cd " . shq($dir) . " && env $envs timeout -k 10 $timeout "
           . "$^X $inc " . shq($f) . " >" . shq("$log.tap")
           . " 2>" . shq("$log.err") . " </dev/null");

    my $r = inspect($dir, $f);

    printf STDERR " %d/%d passed (%ds)\n", $r->{passed}, $r->{tests},
        time - $start;

    return $r;
}


# ngx_http_lua_upstream_module.so, built once from the anchors
sub lua_upstream {
    my $so = "$anchors/lua-upstream-nginx-module/"
             . "ngx_http_lua_upstream_module.so";

    return $so if -f $so;

    system("$FindBin::Bin/build-lua-upstream.sh", $anchors) == 0
        or die "building lua-upstream-nginx-module failed\n";

    return $so;
}


# a file's TAP, and what the TAP does not say: nginx not starting, workers
# crashing, our balancer replaced by the file's own
sub inspect {
    my ($dir, $f) = @_;
    my $log = "$dir/" . basename($f);
    my $tmp = "$dir/tmp/" . basename($f, '.t');
    my $r = parse_tap("$log.tap");
    my $err = `cat '$log.err' 2>/dev/null`;
    my $logs = join ' ', map { "'$tmp'$_/error.log" } qw(/* /*/* /*/*/*);

    $r->{log} = "$log.err";
    $r->{nostart} = () = $err =~ /Can't start nginx|Cannot start nginx/g;
    $r->{crashes} = 0 + `cat $logs 2>/dev/null | grep -c 'exited on signal'`;
    $r->{redefined} = 0 + `cat $logs 2>/dev/null | grep -c 'load balancing method redefined'`;

    return $r;
}


sub free_port {
    for (1 .. 50) {
        my $p = 20000 + int(rand(12000));
        next if system("(echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null") == 0;
        return $p;
    }

    die "no free port\n";
}


sub shq {
    my ($s) = @_;
    $s =~ s/'/'\\''/g;
    return "'$s'";
}


sub parse_tap {
    my ($file) = @_;
    my %r = (tests => 0, passed => 0, skipped => 0, ok => {}, name => {});

    open my $fh, '<', $file or return \%r;

    while (<$fh>) {
        chomp;

        if (/^1\.\.(\d+)(?:\s*#\s*(?i:skip)\w*\s*(.*))?/) {
            $r{plan} = $1;
            $r{skip_all} = $2 // 'skipped' if $1 == 0;

        } elsif (/^(not )?ok (\d+)\s*(?:-\s*)?(.*)$/) {
            my ($not, $n, $rest) = ($1, $2, $3);
            my ($name, $dir) = split /\s+#\s+/, $rest, 2;
            $dir //= '';

            # a test is known by its name and the how-manieth of that
            # name it is: when nginx does not start, the numbers shift
            $name //= '';

            # Test::Nginx::Socket puts the answer in some names
            (my $id = $name) =~ s/ - response is expected \(.*\)$//;
            my $key = $id . '#' . ++$r{count}{$id};

            $r{name}{$key} = "$n ($name)";
            $r{seen}++;
            push @{ $r{keys} }, $key;

            if ($dir =~ /^skip/i) {
                $r{skipped}++;
            } elsif ($dir =~ /^todo/i) {
                $r{todo}++;
            } elsif (!$not) {
                $r{ok}{$key} = 1;
                $r{passed}++;
            }
        }
    }

    close $fh;

    $r{tests} = $r{plan} // 0;
    $r{tests} = $r{seen} if ($r{seen} // 0) > $r{tests};

    return \%r;
}


sub compare {
    my ($suite, $f, $stock, $our) = @_;
    my @lost;

    my (%block, @order);

    for my $k (@{ $stock->{keys} || [] }) {
        next unless $stock->{ok}{$k};

        # Test::Nginx::Socket: several checks per block, told per block
        if ($k =~ /^(?:\S+\.t )?TEST (\d+): (.*?) - /) {
            my $b = $block{$1} //= { title => $2, ok => 0, lost => 0 };
            push @order, $1 unless $b->{ok}++;
            $b->{lost}++ unless $our->{ok}{$k};
            next;
        }

        next if $our->{ok}{$k};
        push @lost, $stock->{name}{$k};
    }

    for my $n (sort { $a <=> $b } @order) {
        my $b = $block{$n};
        next unless $b->{lost};
        push @lost, "TEST $n ($b->{lost}/$b->{ok})";
    }

    my $n = grep { $stock->{ok}{$_} && !$our->{ok}{$_} }
            @{ $stock->{keys} || [] };

    return {
        suite => $suite, file => basename($f), stock => $stock,
        ours => $our, lost => \@lost, lost_n => $n,
    };
}


sub report {
    my ($rows) = @_;
    my @out;
    my %tot;

    # the time of the run: now, or the newest TAP when only reporting
    my $when = time;

    if ($report_only) {
        my @t = map { (stat $_)[9] } glob("$work/*/*.tap $work/*/*/*.tap");
        ($when) = sort { $b <=> $a } @t if @t;
    }

    push @out, sprintf("Anchor suites, %s, nginx %s (%s), modules of %s",
                       strftime('%Y-%m-%d %H:%M UTC', gmtime $when),
                       $nginx_version, $nginx, git_head());
    push @out, '';

    for my $a (anchor_commits()) {
        push @out, "- $a";
    }

    push @out, '';
    push @out, '| suite | file | tests | passed stock | passed ours '
               . '| pass stock, fail ours |';
    push @out, '|---|---|---:|---:|---:|---|';

    for my $r (@$rows) {
        if ($r->{missing}) {
            push @out, "| $r->{suite} | $r->{file} | | | | |";
            next;
        }

        my ($s, $o) = ($r->{stock}, $r->{ours});
        my $tests = $s->{tests} || $o->{tests};
        my $note = '';

        if (defined $s->{skip_all}) {
            $note = "stock skips: $s->{skip_all}; ";
        } elsif (!$s->{tests}) {
            $note = 'stock did not run (see its .err); ';
        }

        if (defined $o->{skip_all} && !defined $s->{skip_all}) {
            $note .= "ours skips: $o->{skip_all}; ";
        }

        if ($o->{nostart} > $s->{nostart}) {
            $note .= "nginx did not start; ";
        }

        if ($o->{crashes} > $s->{crashes}) {
            $note .= "$o->{crashes} worker crash(es); ";
        }

        if ($o->{redefined} > $s->{redefined}) {
            $note .= "in $o->{redefined} upstream(s) the file's balancing "
                     . "method replaced ours (\"load balancing method "
                     . "redefined\"): not tested there; ";
        }

        my $lost = join(', ', @{ $r->{lost} });
        $lost = "$note$lost" if $note;
        $lost =~ s/;\s*$//;
        $lost = 'none' if $lost eq '';
        $lost =~ s/\|/\\|/g;

        push @out, "| $r->{suite} | $r->{file} | $tests | $s->{passed} "
                   . "| $o->{passed} | $lost |";

        $tot{$r->{suite}}{tests} += $tests;
        $tot{$r->{suite}}{stock} += $s->{passed};
        $tot{$r->{suite}}{ours} += $o->{passed};
        $tot{$r->{suite}}{lost} += $r->{lost_n};
    }

    for my $suite (grep { $tot{$_} } @ORDER) {
        my $t = $tot{$suite};
        push @out, "| **$suite** | **total** | $t->{tests} | $t->{stock} "
                   . "| $t->{ours} | $t->{lost} |";
    }

    push @out, '';
    push @out, 'Tests are TAP test points (nginx-tests: one per check; '
               . 'Test::Nginx::Socket: several per block and repetition). '
               . '"TEST n (k/m)": k of the m checks of block n that pass '
               . 'stock fail ours.';
    push @out, '';
    push @out, sprintf("(%d s; logs and TAP under %s)", time - $t0, $work);

    my $md = join("\n", @out) . "\n";

    write_file("$work/results.md", $md);
    print $md;
}


sub git_head {
    my $h = `cd '$root' && git log -1 --format=%h -- modules lua-compat 2>/dev/null`;
    chomp $h;
    my $dirty = `cd '$root' && git status --porcelain -- modules lua-compat 2>/dev/null`;
    return ($h || 'unknown') . ($dirty ? ' (with uncommitted changes)' : '');
}


# the anchors are plain trees (git archive): their commits are read from
# COMMIT files when present, else from a git checkout
sub anchor_commits {
    my @a;

    for my $name (qw(nginx-tests lua-resty-limit-traffic
                     lua-resty-upstream-healthcheck test-nginx))
    {
        my $d = "$anchors/$name";
        next unless -d $d;

        my $c = '';

        if (-f "$d/COMMIT") {
            $c = `cat '$d/COMMIT'`;
        } elsif (-e "$d/.git") {
            $c = `cd '$d' && git rev-parse HEAD 2>/dev/null`;
        }

        chomp $c;
        push @a, "$name " . ($c || '(commit unknown)');
    }

    return @a;
}


sub write_file {
    my ($f, $s) = @_;
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $s;
    close $fh;
}
