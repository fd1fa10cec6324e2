# Self-test of the project's Test::Nginx::Socket stand-in (t/lib): proves
# that it passes correct suites and fails wrong ones.  Each fixture in
# t/harness/*.tn (not *.t, so prove does not run them directly) is run with
# "perl -I t/lib", i.e. always with our harness, on its own server root and
# port, and its TAP output is inspected.
#
#   prove t/000-harness.t                   (~3 s)
#
# The valgrind subtests (~5 s more) need the test module; it is loaded after
# TEST_NGINX_LOAD_MODULES, which must hold the modules it depends on:
#
#   TEST_NGINX_LOAD_MODULES=build/modules/ngx_http_resilience_module.so \
#   TEST_NGINX_TEST_MODULE=build/test-modules/ngx_http_resilience_test_module.so \
#       prove t/000-harness.t

use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

# Module paths given relative to the caller's directory stay valid after
# the chdir to the project root.
for my $var (qw(TEST_NGINX_LOAD_MODULES TEST_NGINX_TEST_MODULE)) {
    next unless defined $ENV{$var};
    $ENV{$var} = join ' ', map { -e $_ ? abs_path($_) : $_ } split ' ', $ENV{$var};
}

my $Root = dirname(dirname(abs_path($0)));
chdir $Root or die "cannot chdir to $Root: $!";

my $Tmp = tempdir('nginx-harness-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $ServRoot = "$Tmp/servroot";
my $Port = free_port();

# Run t/harness/$name.tn; returns { status, exit, stdout, stderr, not_ok }.
sub run_fixture {
    my ($name, %env) = @_;
    my $fixture = "t/harness/$name.tn";
    my $timeout = delete $env{_timeout} || 60;

    local %ENV = %ENV;
    delete @ENV{qw(TEST_NGINX_PORT TEST_NGINX_USE_VALGRIND TEST_NGINX_NO_CLEAN
                   TEST_NGINX_SERVROOT TEST_NGINX_SERVER_PORT
                   TEST_NGINX_SERVER_ROOT TEST_NGINX_HARNESS_HANDLER)};
    $ENV{TEST_NGINX_SERVROOT} = $ServRoot;
    $ENV{TEST_NGINX_SERVER_PORT} = $Port;
    $ENV{TEST_NGINX_HARNESS_WORD} = 'harness';
    @ENV{keys %env} = values %env;

    my ($out, $err) = ("$Tmp/$name.out", "$Tmp/$name.err");
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDOUT, '>', $out or die;
        open STDERR, '>', $err or die;
        exec $^X, '-I', 't/lib', $fixture or POSIX::_exit(127);
    }

    my $deadline = time + $timeout;
    my $status;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) { $status = $?; last }
        if (time > $deadline) {
            kill 'KILL', -$pid;
            waitpid($pid, 0);
            $status = -1;
            stop_leftover_nginx();
            last;
        }
        sleep 0.05;
    }

    my %r = (status => $status, exit => $status == -1 ? -1 : $status >> 8,
             stdout => slurp($out), stderr => slurp($err));
    $r{not_ok} = [ $r{stdout} =~ /^(not ok \d+.*)$/mg ];
    return \%r;
}

sub slurp {
    my ($f) = @_;
    open my $in, '<', $f or return '';
    local $/;
    return scalar <$in>;
}

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp')
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub stop_leftover_nginx {
    my $pid = slurp("$ServRoot/logs/nginx.pid");
    kill 'KILL', $1 if $pid =~ /^(\d+)/;
}

# Did the fixture leave nginx running?  (It must stop it at the end.)
sub nginx_left_running {
    my $pid = slurp("$ServRoot/logs/nginx.pid");
    if ($pid =~ /^(\d+)/ && kill 0, $1) {
        return 1 if slurp("/proc/$1/stat") !~ /^\d+ \(.*\) [ZX]/s;
    }
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $Port,
                                     Proto => 'tcp', Timeout => 1);
    return $sock ? 1 : 0;
}

sub show {
    my ($r) = @_;
    diag("exit: $r->{exit}\n--- stdout:\n$r->{stdout}\n--- stderr:\n$r->{stderr}");
}

# The fixture must pass: exit 0 and no "not ok".
sub expect_pass {
    my ($name, %env) = @_;
    my $r = run_fixture($name, %env);
    my $ok = $r->{exit} == 0 && !@{ $r->{not_ok} } && $r->{stdout} =~ /^ok 1 /m;
    ok($ok, "$name: passes") or show($r);
    ok(!nginx_left_running(), "$name: nginx stopped at the end");
    return $r;
}

# The fixture must fail: non-zero exit and exactly one "not ok", whose name
# matches $pattern (so the failure is the one the fixture is about).
sub expect_failure {
    my ($name, $pattern, %env) = @_;
    my $r = run_fixture($name, %env);
    my @bad = @{ $r->{not_ok} };
    ok($r->{exit} != 0, "$name: exits non-zero") or show($r);
    is(scalar @bad, 1, "$name: exactly one failing check") or show($r);
    like($bad[0] // '', $pattern, "$name: the failure names the check");
    ok(!nginx_left_running(), "$name: nginx stopped at the end");
    return $r;
}

my $block = qr/ - t\/harness\/[\w-]+\.tn TEST 1: [^-]+ - /;

# --- a correct suite passes (and its plan proves the per-section counts)
my $r = expect_pass('pass');
like($r->{stdout}, qr/^1\.\.52$/m, 'pass: all 52 planned checks ran');

# --- each kind of wrong expectation is a failure of its own
expect_failure('fail-body',
    qr/^not ok \d+$block\Qresponse_body - response is expected\E/);
expect_failure('fail-status', qr/^not ok \d+$block\Qstatus code ok\E$/);
expect_failure('fail-header', qr/^not ok \d+$block\Qheader X-Harness ok\E$/);
expect_failure('fail-error-log',
    qr/^not ok \d+$block\Qpattern "harness pattern that nginx never logs" should match a line in error.log\E/);
expect_failure('fail-no-error-log',
    qr/^not ok \d+$block\Qpattern "[error]" should not match any line in error.log\E/);

# --- must_die
expect_pass('must-die-broken');
expect_failure('must-die-valid', qr/^not ok \d+$block\Qdie as expected\E$/);

# --- valgrind mode
SKIP: {
    my $module = $ENV{TEST_NGINX_TEST_MODULE};
    skip 'valgrind subtests: set TEST_NGINX_TEST_MODULE to the test module '
         . '(.so providing resilience_test_leak)', 9 unless $module;
    skip "valgrind subtests: TEST_NGINX_TEST_MODULE=$module does not exist", 9
        unless -f $module;
    skip 'valgrind subtests: valgrind is not installed', 9
        unless grep { -x "$_/valgrind" } split /:/, $ENV{PATH} // '';

    # The test module after the others (it may need the core module).
    my $load = join ' ', (grep { $_ ne $module } split ' ',
                          $ENV{TEST_NGINX_LOAD_MODULES} // ''), $module;
    my %vg = (TEST_NGINX_USE_VALGRIND => 1, TEST_NGINX_LOAD_MODULES => $load,
              _timeout => 120);

    expect_pass('valgrind', %vg,
                TEST_NGINX_HARNESS_HANDLER => 'return 200 "ok\n";');

    my $leak = expect_failure('valgrind',
        qr/^not ok \d+$block\Qvalgrind reported memory errors\E$/,
        %vg, TEST_NGINX_HARNESS_HANDLER => 'resilience_test_leak;');
    like($leak->{stderr}, qr/definitely lost in loss record/,
         'valgrind: the leak is reported');
    like($leak->{stderr}, qr/depends on uninitialised value/,
         'valgrind: the uninitialised branch is reported');
    like($leak->{stderr}, qr/resilience_test_leak_handler/,
         'valgrind: the report names the leaking function');
}

done_testing();
