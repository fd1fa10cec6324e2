package Test::Nginx::Socket;

# Minimal, from-scratch implementation of the subset of OpenResty's
# Test::Nginx::Socket that this project's t/*.t suites use, built on
# Debian's Test::Base (which parses the "=== TEST" / "--- section" data and
# runs the section filters such as chomp and eval).  Process management and
# nginx.conf generation live in Test::Nginx::Util (t/lib/Test/Nginx/Util.pm).
#
# It is only used when the real Test::Nginx is not installed.  Suites must
# pass or fail the same way under both, so the observable behaviour (test
# names, number of tests per block, request building, error-log checking,
# nginx.conf layout) deliberately follows the real module; the comments
# marked "mirrors Test::Nginx" point out the non-obvious cases, e.g.:
#
#   - blocks run in random order unless no_shuffle();
#   - nginx is (re)started once per block; repeat_each(N) sends the block's
#     requests N times to that same nginx, "--- init" runs once before them;
#   - with several requests (request eval [...] or pipelined_requests) the
#     error-log sections are checked after every response, each time against
#     the lines logged since the previous check: an error_log pattern must
#     show up after each request, not just once per block;
#   - workers(N) alone does not turn the master process on: use master_on().
#
# Sections: main_config http_config config init request more_headers
# pipelined_requests raw_request raw_request_middle_delay error_code
# error_code_like response_body response_body_like response_body_unlike
# response_headers response_headers_like raw_response_headers_like
# raw_response_headers_unlike error_log no_error_log grep_error_log
# grep_error_log_out timeout wait abort ignore_response user_files log_level
# must_die, plus ONLY, SKIP and LAST (handled by Test::Base).
#
# Environment: TEST_NGINX_BINARY TEST_NGINX_LOAD_MODULES TEST_NGINX_SERVROOT
# TEST_NGINX_SERVER_PORT TEST_NGINX_PORT TEST_NGINX_USE_VALGRIND
# TEST_NGINX_NO_CLEAN TEST_NGINX_SLEEP TEST_NGINX_TIMEOUT
# TEST_NGINX_LOG_LEVEL TEST_NGINX_MASTER_PROCESS TEST_NGINX_NO_SHUFFLE, and
# any $TEST_NGINX_* referenced by a section.
#
# Self-test: prove t/000-harness.t

use strict;
use warnings;

use Test::Base -base;

use IO::Select ();
use IO::Socket::INET ();
use HTTP::Response ();
use POSIX qw(EAGAIN EWOULDBLOCK);
use Scalar::Util qw(looks_like_number);
use List::Util qw(shuffle);
use Time::HiRes qw(sleep time);
use Test::LongString ();

use Test::Nginx::Util;

our $VERSION = '0.01';

our @EXPORT = qw(
    run_tests repeat_each no_shuffle workers master_on master_off
    master_process_enabled log_level no_long_string no_root_location
    worker_connections env_to_nginx timeout server_port server_root html_dir
    bail_out add_block_preprocessor is_str
    $ServerPort $ServRoot $ServerAddr $ServerName $NginxBinary
);

my @BlockPreprocessors;
my $PrevConfig;

sub add_block_preprocessor(&) { push @BlockPreprocessors, shift }

sub is_str {
    my ($got, $expected, $desc) = @_;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

sub run_tests () {
    my @blocks = Test::Base::blocks();
    # mirrors Test::Nginx: blocks run in random order unless no_shuffle().
    @blocks = shuffle @blocks unless $Test::Nginx::Util::NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        # mirrors Test::Nginx: test names are "<file> <block title> - <check>"
        $block->set_value(name => "$0 " . $block->name);
        run_block($block);
    }
}

sub run_block {
    my ($block) = @_;
    my $name = $block->name;

    Test::Nginx::Util::reset_rand_ports();

    if (defined $block->must_die) {
        run_must_die_block($block);
        return;
    }

    my $valgrind = $UseValgrind ? 1 : 0;

    # mirrors Test::Nginx: a block without "--- config" reuses the running
    # nginx of the previous block.
    my $config = $block->config;
    my $reuse = !defined $config && !$valgrind
                && Test::Nginx::Util::nginx_is_running();
    $config //= $PrevConfig;
    $PrevConfig = $config;

    unless ($reuse) {
        Test::Nginx::Util::stop_nginx($name);
        Test::Nginx::Util::setup_server_root();
        Test::Nginx::Util::write_user_files($block);
        Test::Nginx::Util::write_config_file($block, $config, valgrind => $valgrind);

        my $err = Test::Nginx::Util::start_nginx(valgrind => $valgrind);
        if ($err) {
            Test::More::fail("$name - nginx started");
            Test::More::diag($err);
            return;
        }
    }

    reset_error_log_pos();
    run_init($block);

    for my $rep (0 .. $RepeatEach - 1) {
        Test::Nginx::Util::write_user_files($block) if $rep > 0;
        run_requests($block, $rep);
    }

    check_valgrind($block) if $valgrind;
}

# mirrors Test::Nginx: "--- init" is Perl code run once per block, after
# nginx has started and before the (repeated) requests; it is evaluated in
# package Test::Nginx::Util.
sub run_init {
    my ($block) = @_;
    my $code = $block->init;
    return unless defined $code;
    package Test::Nginx::Util;
    eval $code;
    bail_out($block->name . " - init failed: $@") if $@;
}

# Under valgrind nginx is stopped after every block so that valgrind writes
# its final report; any memcheck error fails the block.  Nothing is emitted
# for a clean run, so suites' test plans stay valid.
sub check_valgrind {
    my ($block) = @_;
    my $name = $block->name;
    Test::Nginx::Util::stop_nginx($name);
    my $problems = Test::Nginx::Util::valgrind_problems();
    return unless defined $problems;
    Test::More::fail("$name - valgrind reported memory errors");
    Test::More::diag("valgrind log: $Test::Nginx::Util::ValgrindLogFile\n$problems");
}

# "--- must_die": nginx must refuse to start.  mirrors Test::Nginx: one
# "die as expected" test (or an exit-code test when must_die is a number)
# plus the error_log checks, per repetition; valgrind is not used.
sub run_must_die_block {
    my ($block) = @_;
    my $name = $block->name;
    my $must_die = $block->must_die;
    $must_die =~ s/^\s+|\s+$//g;

    Test::Nginx::Util::stop_nginx($name);
    Test::Nginx::Util::setup_server_root();
    Test::Nginx::Util::write_user_files($block);
    Test::Nginx::Util::write_config_file($block, scalar $block->config, valgrind => 0);
    reset_error_log_pos();

    for my $rep (0 .. $RepeatEach - 1) {
        my $status = Test::Nginx::Util::run_nginx_sync();
        my $exit = $status >> 8;
        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (length $must_die && looks_like_number($must_die)) {
            Test::More::is($exit, $must_die, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        # The startup failure is in error.log (nginx -e) and on stderr.
        my $stderr = Test::Nginx::Util::stderr_output();
        check_error_log($block, $rep, [split /^/, $stderr]);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it\n";
            my $deadline = time + 2;
            sleep 0.02 while time < $deadline && !Test::Nginx::Util::read_pid_file();
            Test::Nginx::Util::stop_nginx($name);
        }
    }
}

# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------

sub run_requests {
    my ($block, $rep) = @_;
    my $name = $block->name;

    my $requests = build_requests($block);
    bail_out("$name - request empty") unless @$requests;

    my $pipelined = defined $block->pipelined_requests
                    ? scalar @{ $block->pipelined_requests } : 0;
    my $need_array = $pipelined || @$requests > 1;
    my $timeout = parse_time(scalar $block->timeout) // $Test::Nginx::Util::Timeout;
    my $wait = $block->wait;

    my $req_idx = 0;
    for my $i (0 .. $#$requests) {
        my $req = $requests->[$i];
        my $raw = send_request($block, $req, $timeout);
        my $nresp = $pipelined || 1;

        for my $k (1 .. $nresp) {
            my ($res, $raw_headers, $left);
            unless (defined $block->ignore_response) {
                ($res, $raw_headers, $left) = parse_response($name, $raw, $req->{head});
                check_response($block, $res, $raw_headers, $req_idx, $rep, $need_array);
            }
            if ($k < $nresp) {
                $raw = $left;
            } elsif (defined $left && length $left) {
                (my $shown = $left) =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
                warn "WARNING: $name - unexpected extra bytes after the response: "
                     . "\"$shown\"\n";
            }

            # mirrors Test::Nginx: with several requests (or pipelined ones)
            # the error log is also checked after each response but the last,
            # each time against the lines logged since the previous check.
            if ($k < $nresp || $i < $#$requests) {
                sleep $wait if $wait;
                check_error_log($block, $rep);
            }
            $req_idx++;
        }
    }

    sleep $wait if $wait;
    check_error_log($block, $rep);
}

# The blocks' requests as a list of { packets => [ {value, delay} ... ],
# head => bool }; each list entry is sent on its own connection.
sub build_requests {
    my ($block) = @_;
    my $name = $block->name;

    if (defined $block->raw_request) {
        my $raw = $block->raw_request;
        my @packets = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        my $delay = $block->raw_request_middle_delay;
        return [ _request_entry([ map { { value => $_, delay => $delay } } @packets ]) ];
    }

    my $more = $block->more_headers // '';

    if (defined $block->pipelined_requests) {
        my $reqs = $block->pipelined_requests;
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= build_request($name, $reqs->[$i], _headers_for($name, $more, $i), $conn);
        }
        return [ _request_entry([ { value => $all } ]) ];
    }

    my $request = $block->request;
    return [] unless defined $request;
    my @reqs = ref $request eq 'ARRAY' ? @$request : ($request);
    bail_out("$name - invalid --- request: must be a string or an array")
        if ref $request && ref $request ne 'ARRAY';

    my @list;
    for my $i (0 .. $#reqs) {
        my $r = $reqs[$i];
        my $hdrs = _headers_for($name, $more, $i);
        if (ref $r eq 'ARRAY') {
            # a request given as packets: ["GET /foo HTTP/1.1\r\n", ...];
            # a packet may be { value => '...', delay_before => secs }.
            my @parts = map { ref $_ ? $_ : { value => $_ } } @$r;
            my $text = join '', map { $_->{value} } @parts;
            my $full = build_request($name, $text, $hdrs, 'close');
            push @list, _request_entry(_split_like($full, $text, \@parts));
        } else {
            push @list, _request_entry([ { value => build_request($name, $r, $hdrs, 'close') } ]);
        }
    }
    return \@list;
}

sub _request_entry {
    my ($packets) = @_;
    my $text = join '', map { $_->{value} } @$packets;
    return { packets => $packets, head => ($text =~ /^\s*HEAD\s/ ? 1 : 0) };
}

# Re-split a completed request at the packet boundaries the test gave.
# The bytes we add (headers) are inserted after the request line, so they
# go to the first packet; whatever the body trimming removed comes off the
# last one.
sub _split_like {
    my ($full, $orig, $parts) = @_;
    return [ { value => $full, delay => $parts->[0]{delay_before} } ] if @$parts <= 1;
    my $extra = length($full) - length($orig);
    my ($pos, @out) = (0);
    for my $i (0 .. $#$parts) {
        my $len = length $parts->[$i]{value};
        $len += $extra if $i == 0;
        $len = 0 if $len < 0;
        $len = length($full) - $pos if $i == $#$parts || $pos + $len > length $full;
        push @out, { value => substr($full, $pos, $len),
                     delay => $parts->[$i]{delay_before} };
        $pos += $len;
    }
    return \@out;
}

sub _headers_for {
    my ($name, $more, $i) = @_;
    if (ref $more eq 'ARRAY') {
        my $h = $more->[$i];
        bail_out("$name - --- more_headers lacks data for request $i")
            unless defined $h;
        return $h;
    }
    return $more;
}

# Turn a "--- request" string ("METHOD [URI [VERSION]]\n[body]") into an
# HTTP request.  mirrors Test::Nginx: comment lines and leading blanks are
# dropped, the body is trimmed, Host/Connection/Content-Length are added
# unless more_headers has them.
sub build_request {
    my ($name, $req, $more, $conn) = @_;
    $req = expand_env_in_text($req, $name);
    $more = expand_env_in_text($more, $name);
    1 while $req =~ s/^\s*#[^\n]*\n//s || $req =~ s/^\s+//s;

    my ($first, $body) = split /\n/, $req, 2;
    bail_out("$name - Request line should be non-empty")
        unless defined $first && $first =~ /\S/;
    my ($method, $uri, $ver) = split ' ', $first;
    $uri //= '/';
    $ver //= 'HTTP/1.1';

    my ($headers, $chunked) = parse_more_headers($more);
    my $out = "$method $uri $ver\r\n";
    $out .= "Host: $Test::Nginx::Util::ServerName\r\n" unless $headers =~ /^Host:/mi;
    $out .= "Connection: $conn\r\n" unless $headers =~ /^Connection/mi;
    $out .= $headers;

    $body //= '';
    if ($body ne '' && !$chunked && $headers !~ /^Content-Length:/mi) {
        $body =~ s/^\s+|\s+$//gs;
        $out .= "Content-Length: " . length($body) . "\r\n";
    }
    return "$out\r\n$body";
}

sub parse_more_headers {
    my ($in) = @_;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $in // '') {
        next if $line =~ /^\s*#/ || $line !~ /\S/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $val =~ s/\r$//;
        $chunked = 1 if lc $key eq 'transfer-encoding' && lc $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Send one request (a list of packets) on a fresh connection and read until
# the server closes it.  A read/write stall longer than $timeout is a
# failure unless the block has "--- abort".
sub send_request {
    my ($block, $req, $timeout) = @_;
    my $name = $block->name;

    my $sock = _connect($name);
    return '' unless $sock;
    $sock->blocking(0);

    local $SIG{PIPE} = 'IGNORE';
    my @packets = @{ $req->{packets} };
    my ($buf, $resp, $sent) = ('', '', 0);
    my $sel = IO::Select->new($sock);

    while (1) {
        if ($buf eq '' && @packets) {
            my $p = shift @packets;
            my $delay = $sent++ ? $p->{delay} : 0;
            sleep $delay if $delay;
            $buf = $p->{value};
        }
        my $writing = $buf ne '';
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef, undef, $timeout);
        if (!$r && !$w) {
            _timed_out($block);
            last;
        }
        if ($w && @$w) {
            my $n = syswrite($sock, $buf);
            if (defined $n) {
                substr($buf, 0, $n) = '';
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK) {
                # the server may close early (e.g. 413): keep what it sent
                $buf = '';
                @packets = ();
            }
        }
        if ($r && @$r) {
            my $n = sysread($sock, my $chunk, 65536);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK;
                warn "WARNING: $name - HTTP response read failure: $!\n";
                last;
            }
            last if $n == 0;
            $resp .= $chunk;
        }
    }
    close $sock;
    return $resp;
}

sub _connect {
    my ($name) = @_;
    my $err;
    for my $try (1 .. 20) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $Test::Nginx::Util::ServerAddr,
            PeerPort => $ServerPort,
            Proto    => 'tcp',
            Timeout  => 3,
        );
        return $sock if $sock;
        $err = $!;
        sleep 0.1;
    }
    Test::More::fail("$name - Can't connect to "
                     . "$Test::Nginx::Util::ServerAddr:$ServerPort: $err");
    return undef;
}

sub _timed_out {
    my ($block) = @_;
    # mirrors Test::Nginx: same test name; "--- abort" expects the timeout.
    Test::More::fail("ERROR: client socket timed out - " . $block->name)
        unless defined $block->abort;
}

# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------

# Parse one response off the front of $raw.  Returns (HTTP::Response,
# raw header text, bytes left after this response).
sub parse_response {
    my ($name, $raw, $head) = @_;
    $raw //= '';
    my $res = HTTP::Response->new;

    my ($header_text, $rest) = $raw =~ /\A(.*?\r?\n)\r?\n(.*)\z/s;
    unless (defined $header_text) {
        # no complete header block: expose what we got as the body
        $res->content($raw);
        return ($res, '', undef);
    }

    my @lines = split /\r?\n/, $header_text;
    my $status = shift @lines;
    if ($status =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d{3})(?:\s+(.*))?$}) {
        $res->code($1);
        $res->message($2 // '');
    }
    for my $line (@lines) {
        my ($k, $v) = $line =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/ or next;
        $res->push_header($k, $v);
    }

    my $code = $res->code // 0;
    if ($head || $code =~ /^1/ || $code == 204 || $code == 304) {
        return ($res, $header_text, $rest);
    }

    my $te = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    if (defined $te && $te =~ /\bchunked\b/i) {
        my ($body, $left, $err) = decode_chunked($rest);
        if (defined $err) {
            Test::More::fail("$name - invalid chunked body received: $err");
        }
        $res->content($body);
        return ($res, $header_text, $left);
    }
    if (defined $len && $len =~ /^\d+$/) {
        if (length $rest < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($rest) . "\n";
            $res->content($rest);
            return ($res, $header_text, undef);
        }
        $res->content(substr $rest, 0, $len);
        return ($res, $header_text, substr $rest, $len);
    }
    $res->content($rest);
    return ($res, $header_text, undef);
}

# Returns (decoded body, bytes after the last chunk, error or undef).
sub decode_chunked {
    my ($raw) = @_;
    my $body = '';
    my $pos = 0;
    while (1) {
        my $eol = index $raw, "\r\n", $pos;
        return ($body, undef, "no last chunk found") if $eol < 0;
        my $line = substr $raw, $pos, $eol - $pos;
        return ($body, undef, "bad chunk size line \"$line\"")
            unless $line =~ /^\s*([0-9A-Fa-f]+)\s*(?:;.*)?$/;
        my $size = hex $1;
        $pos = $eol + 2;
        if ($size == 0) {
            # skip trailers up to the empty line
            while (1) {
                my $e = index $raw, "\r\n", $pos;
                return ($body, undef, "unterminated trailer") if $e < 0;
                my $t = substr $raw, $pos, $e - $pos;
                $pos = $e + 2;
                last if $t eq '';
            }
            return ($body, substr($raw, $pos), undef);
        }
        return ($body, undef, "not enough octets for the data section")
            if length($raw) < $pos + $size + 2;
        $body .= substr $raw, $pos, $size;
        $pos += $size;
        return ($body, undef, "expected CRLF after chunk data")
            unless substr($raw, $pos, 2) eq "\r\n";
        $pos += 2;
    }
}

# An expected value for request $idx: an arrayref gives one value per
# request (mirrors Test::Nginx's get_indexed_value).
sub indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        return $value->[$idx] if $need_array || $idx == 0;
    } elsif (!$need_array) {
        return $value;
    }
    bail_out("$name - You asked for many requests, the expected results "
             . "should be arrays as well.");
}

sub check_response {
    my ($block, $res, $raw_headers, $idx, $rep, $need_array) = @_;
    check_error_code($block, $res, $idx, $need_array);
    check_raw_response_headers($block, $raw_headers, $idx, $need_array);
    check_response_headers($block, $res, $raw_headers, $idx, $need_array);
    check_response_body($block, $res, $idx, $rep, $need_array);
}

sub check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = indexed_value($name, scalar $block->error_code_like, $idx, $need_array);
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");
    } else {
        my $expected = defined $block->error_code
            ? indexed_value($name, scalar $block->error_code, $idx, $need_array) : 200;
        Test::More::is($got, $expected, "$name - status code ok");
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $section = "raw_response_headers_$kind";
        next unless defined $block->$section;
        my $pat = indexed_value($name, scalar $block->$section, $idx, $need_array);
        my $cmp = $kind eq 'like' ? \&Test::More::like : \&Test::More::unlike;
        $cmp->($raw_headers // '', qr/$pat/s, "$name - raw resp headers $kind");
    }
}

# "Name: value" lines; "!Name" means the header must be absent.  Repeated
# names: the last line wins (as in Test::Nginx, which uses a hash).
sub parse_header_spec {
    my ($spec) = @_;
    my (@order, %h);
    for my $line (split /\n/, $spec // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $val);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $val) = split /\s*:\s*/, $line, 2;
            $val //= '';
        }
        push @order, $key unless exists $h{$key};
        $h{$key} = $val;
    }
    return map { [$_, $h{$_}] } @order;
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        my $spec = indexed_value($name, scalar $block->response_headers, $idx, $need_array);
        for my $h (parse_header_spec($spec)) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($raw_headers // '', qr/^\s*\Q$key\E\s*:/mi,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            my $got = $res ? $res->header($key) : undef;
            Test::More::is($got // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $spec = indexed_value($name, scalar $block->response_headers_like, $idx, $need_array);
        for my $h (parse_header_spec($spec)) {
            my ($key, $pat) = @$h;
            my $got = $res ? $res->header($key) : undef;
            Test::More::like($got // '', qr/^$pat$/, "$name - header $key like ok");
        }
    }
}

sub check_response_body {
    my ($block, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined $block->response_body) {
        my $expected = indexed_value($name, scalar $block->response_body, $idx, $need_array);
        my $tag = "(repeated req $rep, req $idx)";
        if (ref $expected eq 'Regexp') {
            Test::More::like($content, $expected, "$name - response_body - like $tag");
            return;
        }
        if (defined $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected = expand_env_in_text($expected, $name);
        }
        my $desc = "$name - response_body - response is expected $tag";
        if ($NoLongString) {
            Test::More::is($content, $expected, $desc);
        } else {
            Test::LongString::is_string($content, $expected, $desc);
        }
        return;
    }

    for my $kind (qw(like unlike)) {
        my $section = "response_body_$kind";
        next unless defined $block->$section;
        my $pat = indexed_value($name, scalar $block->$section, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g unless ref $pat;
        (my $summary = $content // '') =~ s/^\s+|\s+$//g;
        $summary =~ s/\s+/ /g;
        my $cmp = $kind eq 'like' ? \&Test::More::like : \&Test::More::unlike;
        $cmp->($content, qr/$pat/s, "$name - $section - response is expected ($summary)");
        return;
    }
}

# ---------------------------------------------------------------------------
# error.log
# ---------------------------------------------------------------------------

# Patterns of error_log/no_error_log: a multi-line string (one substring per
# line), a qr//, or (eval) an array of strings and qr//s.
sub _patterns {
    my ($spec) = @_;
    return () unless defined $spec;
    return ($spec) if ref $spec eq 'Regexp';
    return grep { defined } @$spec if ref $spec eq 'ARRAY';
    (my $s = $spec) =~ s/\n+\z//;
    return grep { length } split /\n+/, $s;
}

sub _line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _fmt {
    my ($s) = @_;
    $s = "$s";
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub _mentions {
    my ($spec, $what) = @_;
    return 0 unless defined $spec;
    return grep { index("$_", $what) >= 0 } (ref $spec eq 'ARRAY' ? @$spec : ($spec));
}

# Check the error-log sections against the lines logged since the previous
# check (plus $extra lines, e.g. nginx's stderr for must_die).  mirrors
# Test::Nginx: one test per pattern; [alert]/[crit]/[emerg] lines that no
# pattern expects are reported as warnings, assertion failures fail.
sub check_error_log {
    my ($block, $rep, $extra) = @_;
    my $name = $block->name;
    my $log = error_log_data();
    my $lines = [ @$log, @{ $extra || [] } ];

    check_grep_error_log($block, $rep, $lines);

    if (defined $block->error_log) {
        my @pats = _patterns(scalar $block->error_log);
        my @found = (0) x @pats;
        for my $line (@$lines) {
            for my $i (0 .. $#pats) {
                next if $found[$i] || !_line_matches($line, $pats[$i]);
                $found[$i] = 1;
                Test::More::pass("$name - pattern \"$pats[$i]\" matches a line "
                                 . "in error.log (req $rep)");
            }
        }
        for my $i (grep { !$found[$_] } 0 .. $#pats) {
            Test::More::fail("$name - pattern \"$pats[$i]\" should match a line "
                             . "in error.log (req $rep)");
        }
    }

    if (defined $block->no_error_log) {
        for my $pat (_patterns(scalar $block->no_error_log)) {
            my ($at) = grep { _line_matches($lines->[$_], $pat) } 0 .. $#$lines;
            my $p = _fmt($pat);
            if (defined $at) {
                my $last = $at + 9 < $#$lines ? $at + 9 : $#$lines;
                Test::More::fail("$name - pattern \"$p\" should not match any line "
                                 . "in error.log but matches line \""
                                 . _fmt($lines->[$at]) . "\" (req $rep)");
                Test::More::diag("following lines:\n",
                                 join '', @$lines[$at + 1 .. $last]) if $last > $at;
            } else {
                Test::More::pass("$name - pattern \"$p\" does not match a line "
                                 . "in error.log (req $rep)");
            }
        }
    }

    for my $level (qw(alert crit emerg)) {
        next if _mentions(scalar $block->error_log, "[$level")
             || _mentions(scalar $block->no_error_log, "[$level");
        for my $line (grep { /\[$level\]/ } @$log) {
            warn "WARNING: $name - " . _fmt($line) . "\n";
        }
    }

    for my $line (grep { /\bAssertion .*?failed\b/ } @$lines) {
        Test::More::fail("$name - " . _fmt($line));
    }
}

# grep_error_log: a substring or qr//; the matched parts of the new log
# lines, one per line, are compared with grep_error_log_out.  Arrays are
# indexed by the repetition (mirrors Test::Nginx).
sub check_grep_error_log {
    my ($block, $rep, $lines) = @_;
    my $name = $block->name;
    my $pat = $block->grep_error_log;
    my $expected = $block->grep_error_log_out;

    if (!defined $pat) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out "
                 . "is defined") if defined $expected;
        return;
    }
    bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log "
             . "is defined") unless defined $expected;

    $pat = $pat->[$rep] if ref $pat eq 'ARRAY';
    $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
    $expected = expand_env_in_text($expected, $name) unless ref $expected;

    my $matched = '';
    for my $line (@$lines) {
        my $m;
        if (ref $pat) {
            $m = $& if $line =~ $pat;
        } elsif (index($line, $pat) >= 0) {
            $m = $pat;
        }
        $matched .= "$m\n" if defined $m && $m !~ /\n/;
    }
    is_str($matched, $expected, "$name - grep_error_log_out (req $rep)");
}

1;
