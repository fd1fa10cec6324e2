package Test::Nginx::Util;

# Minimal, from-scratch stand-in for the nginx-management half of the
# OpenResty Test::Nginx distribution (Test::Nginx::Util): server root layout,
# nginx.conf generation, starting/stopping nginx (optionally under valgrind)
# and reading the error log.  Only the subset used by this project's suites
# is implemented; where behaviour is observable by a test it mirrors the real
# Test::Nginx on purpose (see the comments marked "mirrors Test::Nginx").
#
# The project uses this copy only when the real Test::Nginx is not installed
# (build.sh: prove -I t/lib -r t/).

use strict;
use warnings;

use base 'Exporter';

use Carp qw(croak);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h SIGQUIT SIGTERM SIGKILL);
use Time::HiRes qw(sleep time);

our $VERSION = '0.01';

our @EXPORT = qw(
    $ServerPort $ServerAddr $ServerName $ServRoot $HtmlDir $LogDir
    $ErrLogFile $AccLogFile $ConfFile $PidFile $NginxBinary
    $RepeatEach $NoLongString $UseValgrind
    repeat_each no_shuffle workers master_on master_off
    master_process_enabled log_level no_long_string no_root_location
    worker_connections env_to_nginx timeout sleep_time server_port
    server_root html_dir bail_out parse_time expand_env_in_text
    error_log_data reset_error_log_pos
);

# ---------------------------------------------------------------------------
# Settings (environment first, then the functions a suite may call)
# ---------------------------------------------------------------------------

our $NginxBinary  = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerPort   = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerAddr   = '127.0.0.1';
our $ServerName   = 'localhost';
our $LogLevel     = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $Workers      = 1;
our $WorkerConnections = 64;
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $RepeatEach   = 1;
our $NoShuffle    = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString;
our $NoRootLocation = 0;
our $Timeout      = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LoadModules  = $ENV{TEST_NGINX_LOAD_MODULES};
our $UseValgrind  = $ENV{TEST_NGINX_USE_VALGRIND};
our $NoClean      = $ENV{TEST_NGINX_NO_CLEAN};
our @EnvToNginx;

# Valgrind makes nginx ~20x slower: allow that much for startup/shutdown.
our $StartupTimeout  = $UseValgrind ? 30 : 5;
our $ShutdownTimeout = $UseValgrind ? 60 : 5;

our $ServRoot   = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
$ServRoot =~ s{/+$}{};
our $LogDir     = "$ServRoot/logs";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $PidFile    = "$LogDir/nginx.pid";
our $StderrFile = "$LogDir/nginx.stderr";
our $ValgrindLogFile = "$LogDir/valgrind.log";
# t/valgrind.suppress of the current directory, else the one of the project
# this harness belongs to (t/lib/Test/Nginx/../../../valgrind.suppress).
our $ValgrindSuppress = (grep { -f } File::Spec->rel2abs('t/valgrind.suppress'),
    File::Spec->rel2abs(__FILE__) =~ s{/lib/Test/Nginx/Util\.pm$}{/valgrind.suppress}r)[0];

# mirrors Test::Nginx: these are visible to the configs as $TEST_NGINX_*.
$ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $ChildPid;          # pid of nginx started in the foreground (valgrind)
our $ErrLogFilePos = 0; # how far check_error_log has read error.log

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub no_shuffle () { $NoShuffle = 1 }
sub workers { $Workers = shift if @_; return $Workers }
sub master_on () { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }
sub log_level { $LogLevel = shift if @_; return $LogLevel }
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub worker_connections { $WorkerConnections = shift if @_; return $WorkerConnections }
sub timeout { $Timeout = shift if @_; return $Timeout }
sub sleep_time { return $TestNginxSleep }
sub server_port { $ServerPort = shift if @_; return $ServerPort }
sub server_root { return $ServRoot }
sub html_dir { return $HtmlDir }

sub master_process_enabled {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcessEnabled;
}

sub env_to_nginx {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub bail_out {
    my $msg = join '', @_;
    stop_nginx('bail_out') unless $NoClean;
    Test::More::BAIL_OUT($msg);
}

# "1.5", "500ms", "2s" -> seconds (mirrors Test::Nginx's parse_time).
sub parse_time {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1 if $t =~ /^([\d.]+)s$/;
    return $t;
}

# ---------------------------------------------------------------------------
# $TEST_NGINX_* substitution
# ---------------------------------------------------------------------------

my %RandPorts;

# Replace every $TEST_NGINX_FOO by $ENV{TEST_NGINX_FOO}.  An undefined
# variable aborts the run, like Test::Nginx does.  $TEST_NGINX_RAND_PORT_N
# gets a free port, stable for the whole block.
sub expand_env_in_text {
    my ($text, $name) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/_env_value($1, $name)/ge;
    return $text;
}

sub _env_value {
    my ($var, $name) = @_;
    if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
        return $RandPorts{$var} //= _free_port();
    }
    bail_out("$name - No environment $var defined.\n") unless defined $ENV{$var};
    return $ENV{$var};
}

sub reset_rand_ports { %RandPorts = () }

sub _free_port {
    my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => $ServerAddr,
                                     LocalPort => 0, Proto => 'tcp')
        or die "cannot find a free port: $!";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

# ---------------------------------------------------------------------------
# Server root: conf/ logs/ html/
# ---------------------------------------------------------------------------

# Recreate conf/, logs/ and html/ (and the temp dirs) from scratch, like
# Test::Nginx does before every nginx start.  Only our own sub-directories
# are removed, never the server root itself.
sub setup_server_root {
    make_path($ServRoot) unless -d $ServRoot;
    remove_tree($ConfDir, $HtmlDir, $LogDir, "$ServRoot/cache",
                glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    make_path($ConfDir, $LogDir, $HtmlDir);
    _write_file("$HtmlDir/index.html", '<html><head><title>It works!</title>'
                . '</head><body>It works!</body></html>');
}

sub _write_file {
    my ($path, $data) = @_;
    open my $out, '>', $path or bail_out("Cannot open $path for writing: $!");
    binmode $out;
    print $out $data;
    close $out;
}

# --- user_files: ">>> name [date]" headers, or (eval) [[name, body, date]]
sub write_user_files {
    my ($block) = @_;
    my $files = $block->user_files;
    return unless defined $files;
    my $name = $block->name;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+?))?\s*$/) {
                push @list, [$1, '', $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    }
    bail_out("$name - user_files must be a string or an ARRAY")
        unless ref $files eq 'ARRAY';

    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) unless -d $dir;
        _write_file($path, expand_env_in_text($body // '', $name));
        if ($date) {
            system('touch', '-d', $date, $path) == 0
                or bail_out("$name - cannot set the date of $path to $date");
        }
    }
}

# ---------------------------------------------------------------------------
# nginx.conf
# ---------------------------------------------------------------------------

# The layout mirrors the one generated by Test::Nginx (see its
# write_config_file), except that load_module lines come first.
sub write_config_file {
    my ($block, $config, %opt) = @_;
    my $name = $block->name;

    my $valgrind = $opt{valgrind};
    my $daemon = $valgrind ? 'off' : 'on';
    my $master = $valgrind ? 'off' : $MasterProcessEnabled;
    my $level = $block->log_level || $LogLevel;

    my $main_config = expand_env_in_text($block->main_config // '', $name);
    my $http_config = expand_env_in_text($block->http_config // '', $name);
    $config = expand_env_in_text($config // '', $name);

    # A relative path that exists from the current directory is made
    # absolute (nginx itself would look for it under the server root).
    my $conf = '';
    for my $mod (grep { length } split /\s+/, $LoadModules // '') {
        $mod = File::Spec->rel2abs($mod) if $mod !~ m{^/} && -f $mod;
        $conf .= "load_module $mod;\n";
    }

    $conf .= <<"_EOC_";
worker_processes  $Workers;
daemon $daemon;
master_process $master;
error_log $ErrLogFile $level;
pid       $PidFile;
env LD_PRELOAD;
env LD_LIBRARY_PATH;
_EOC_

    for my $v (@EnvToNginx) {
        $conf .= 'env ' . ($v =~ /\s/ ? "'$v'" : $v) . ";\n";
    }

    # mirrors Test::Nginx: running as root makes the workers root too.
    $conf .= "user root;\n" if $> == 0;

    # mirrors Test::Nginx: temp paths inside the server root (unless the
    # suite sets them), so nothing is written to the system's nginx dirs.
    my $temp = '';
    for my $kind (qw(client_body proxy fastcgi scgi uwsgi)) {
        next if $http_config =~ /\b${kind}_temp_path\b/;
        $temp .= "    ${kind}_temp_path $ServRoot/${kind}_temp;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    $conf .= <<"_EOC_";

$main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}

http {
    access_log $AccLogFile;
$temp
    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config

    server {
        listen          $ServerPort;
        server_name     '$ServerName';
        client_max_body_size 30M;

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}
_EOC_

    _write_file($ConfFile, $conf);
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# A pid is alive if it exists and is not a zombie (the container's pid 1 may
# not reap the daemonised nginx).
sub is_running {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in> // '';
        return 0 if $stat =~ /^\d+ \(.*\) [ZX]/s;
    }
    return 1;
}

sub read_pid_file {
    open my $in, '<', $PidFile or return undef;
    my $pid = <$in>;
    close $in;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    return $1;
}

sub _reap_child {
    return unless $ChildPid;
    if (waitpid($ChildPid, WNOHANG) == $ChildPid || !is_running($ChildPid)) {
        waitpid($ChildPid, WNOHANG);
        undef $ChildPid;
    }
}

sub _wait_gone {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        waitpid($pid, WNOHANG) if $ChildPid && $pid == $ChildPid;
        return 1 unless is_running($pid);
        sleep 0.02;
    }
    return !is_running($pid);
}

# Stop the nginx we started: QUIT (graceful), then TERM, then KILL.
sub stop_nginx {
    my ($name) = @_;
    my @pids = grep { defined && is_running($_) } (read_pid_file(), $ChildPid);
    my %seen;
    for my $pid (grep { !$seen{$_}++ } @pids) {
        kill SIGQUIT, $pid;
        next if _wait_gone($pid, $ShutdownTimeout);
        warn "$name - nginx $pid did not quit; sending TERM\n";
        kill SIGTERM, $pid;
        next if _wait_gone($pid, 2);
        warn "$name - nginx $pid did not terminate; sending KILL\n";
        kill SIGKILL, ($ChildPid && $pid == $ChildPid ? -$pid : $pid);
        _wait_gone($pid, 2);
    }
    _reap_child();
    undef $ChildPid;
    unlink $PidFile;
}

sub nginx_is_running {
    my $pid = read_pid_file();
    return $pid && is_running($pid);
}

# Is something listening on $port (IPv4 or IPv6)?  Read from /proc so that
# probing does not open a connection that would show up in error.log.
sub port_is_listening {
    my ($port) = @_;
    my $hex = sprintf '%04X', $port;
    my $found_proc;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        $found_proc = 1;
        while (<$in>) {
            return 1 if /^\s*\d+:\s+[0-9A-F]+:$hex\s+[0-9A-F]+:[0-9A-F]+\s+0A\b/;
        }
    }
    return 0 if $found_proc;
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                     PeerPort => $port, Timeout => 1);
    return $sock ? 1 : 0;
}

sub nginx_cmd {
    return ($NginxBinary, '-p', "$ServRoot/", '-c', 'conf/nginx.conf',
            '-e', $ErrLogFile);
}

sub valgrind_cmd {
    my @cmd = ('valgrind', '--tool=memcheck', '--leak-check=full',
               '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite',
               '--keep-debuginfo=yes',
               '--num-callers=30', '--gen-suppressions=all',
               "--log-file=$ValgrindLogFile");
    push @cmd, "--suppressions=$ValgrindSuppress" if $ValgrindSuppress;
    # TEST_NGINX_USE_VALGRIND='--foo --bar' adds valgrind options.
    push @cmd, split ' ', $UseValgrind if $UseValgrind && $UseValgrind !~ /^\d+$/;
    return @cmd;
}

# Run a command to completion with its stderr saved in $StderrFile.
# Returns the wait status ($?), or -1 if it could not be executed.
sub run_nginx_sync {
    my @cmd = nginx_cmd();
    my $pid = fork;
    die "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        _child_redirect();
        exec @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return $? == 127 << 8 ? -1 : $?;
}

sub _child_redirect {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', $StderrFile;
}

sub stderr_output {
    open my $in, '<', $StderrFile or return '';
    local $/;
    return scalar <$in> // '';
}

sub tail_file {
    my ($file, $n) = @_;
    open my $in, '<', $file or return "(cannot read $file: $!)\n";
    my @lines = <$in>;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

# Start nginx with the config already written.  Returns '' on success or
# an error message (with the tail of the logs) on failure.
sub start_nginx {
    my (%opt) = @_;
    undef $ChildPid;

    if (port_is_listening($ServerPort)) {
        my $deadline = time + 5;
        sleep 0.05 while time < $deadline && port_is_listening($ServerPort);
    }

    if ($opt{valgrind}) {
        my $pid = fork;
        return "fork failed: $!" unless defined $pid;
        if ($pid == 0) {
            setpgrp(0, 0);
            _child_redirect();
            exec(valgrind_cmd(), nginx_cmd()) or POSIX::_exit(127);
        }
        $ChildPid = $pid;
    } else {
        my $status = run_nginx_sync();
        return _start_failure("cannot execute $NginxBinary (TEST_NGINX_BINARY)")
            if $status == -1;
        return _start_failure("nginx exited with status " . ($status >> 8))
            if $status != 0;
    }
    return _wait_for_nginx($opt{valgrind});
}

sub _wait_for_nginx {
    my ($valgrind) = @_;
    my $deadline = time + $StartupTimeout;
    while (time < $deadline) {
        if ($valgrind) {
            _reap_child();
            return _start_failure("nginx (under valgrind) exited during startup")
                unless $ChildPid;
        }
        my $pid = read_pid_file();
        if ($pid && is_running($pid) && port_is_listening($ServerPort)) {
            sleep $TestNginxSleep;
            return '';
        }
        if (!$valgrind && defined $pid && !is_running($pid)) {
            return _start_failure("nginx (pid $pid) died right after starting");
        }
        sleep 0.02;
    }
    my $msg = _start_failure("nginx is not listening on port $ServerPort "
                             . "after $StartupTimeout s");
    stop_nginx('startup');
    return $msg;
}

sub _start_failure {
    my ($what) = @_;
    my $msg = "$what\n";
    my $stderr = stderr_output();
    $msg .= "--- nginx stderr:\n$stderr" if $stderr =~ /\S/;
    $msg .= "--- tail of $ErrLogFile:\n" . tail_file($ErrLogFile, 20);
    $msg .= "--- tail of $ValgrindLogFile:\n" . tail_file($ValgrindLogFile, 20)
        if -f $ValgrindLogFile;
    return $msg;
}

# ---------------------------------------------------------------------------
# error.log
# ---------------------------------------------------------------------------

sub reset_error_log_pos { $ErrLogFilePos = 0 }

# New error.log lines since the previous call (mirrors Test::Nginx's
# error_log_data: it first sleeps a little so that log-phase lines written
# after the response was sent are included).
sub error_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if $ErrLogFilePos;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in;
    close $in;
    return \@lines;
}

# ---------------------------------------------------------------------------
# valgrind
# ---------------------------------------------------------------------------

# First line of a memcheck error record.
my $ValgrindErrorRe = qr/
    ^(?: Invalid\ (?:read|write|free)
       | Conditional\ jump
       | Use\ of\ uninitialised
       | Syscall\ param\ .*uninitialised
       | Mismatched\ free
       | Source\ and\ destination\ overlap
       | .*\ are\ definitely\ lost\ in\ loss\ record
       | Argument\ .*\ of\ function\ .*\ has\ a\ fishy
    )
/x;

# Parse the valgrind log of the last nginx run.  Returns undef if it is clean,
# otherwise a report with the offending error records.
sub valgrind_problems {
    open my $in, '<', $ValgrindLogFile
        or return "cannot read $ValgrindLogFile: $!";

    # Records are runs of "==pid== text" lines separated by "==pid== " lines;
    # un-prefixed lines are --gen-suppressions stanzas, kept with the record
    # they belong to so they can be copied into t/valgrind.suppress.
    my (@records, $cur);
    while (my $line = <$in>) {
        if ($line =~ /^==\d+==\s?(.*\n?)/) {
            my $text = $1;
            if ($text =~ /^\s*$/) {
                push @records, $cur if defined $cur;
                undef $cur;
            } else {
                $cur .= $text;
            }
        } elsif (@records || defined $cur) {
            push @records, $cur if defined $cur;
            undef $cur;
            $records[-1] .= $line;
        }
    }
    push @records, $cur if defined $cur;
    close $in;

    my ($errors, $lost);
    for my $r (@records) {
        $errors = $1 if $r =~ /^ERROR SUMMARY: (\d+) errors/m;
        ($lost = $1) =~ s/,//g if $r =~ /^\s*definitely lost: ([\d,]+) bytes/m;
    }
    my @problems = grep { $_ =~ $ValgrindErrorRe } @records;

    my @why;
    push @why, "ERROR SUMMARY: $errors errors" if $errors;
    push @why, "definitely lost: $lost bytes" if $lost;
    push @why, scalar(@problems) . " memcheck error record(s)" if @problems;
    push @why, "no ERROR SUMMARY in the log (valgrind did not finish?)"
        unless defined $errors;
    return undef unless @why;

    my $report = join('; ', @why) . "\n";
    for my $p (@problems[0 .. ($#problems < 4 ? $#problems : 4)]) {
        $report .= "----\n$p";
    }
    $report .= "---- (" . (@problems - 5) . " more records in the log)\n"
        if @problems > 5;
    return $report;
}

END {
    # mirrors Test::Nginx: leave nginx running only with TEST_NGINX_NO_CLEAN
    # (never under valgrind, whose log is only complete once nginx exits).
    local $?;
    stop_nginx('END') if !$NoClean || $UseValgrind;
}

1;
