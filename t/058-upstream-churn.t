# ngx_http_upstream_discovery_module under churn: a full set swapped for
# another as large ends with exactly the new set; a discovery source
# removed by a reload drains its peers; the tables of upstreams removed
# by reloads are freed.

BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP reloads need master_process on, "
              . "valgrind mode runs without\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Html qw(put_file result);
use NR::Redis qw(free_port);
use NR::Net qw(http_get);
use NR::Nginx;
use Time::HiRes qw(time sleep);

repeat_each(1);
no_shuffle();
no_long_string();
no_root_location();
master_on();
workers(2);
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;
$ENV{"TEST_NGINX_${_}_PORT"} = free_port() for qw(A C CLOSED);

# the peers listed in the status, by state: "up:N draining:M" for the
# peers whose address starts with $prefix
sub peers {
    my ($prefix) = @_;
    my (undef, $m) = http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
    my %n;
    while ($m =~ /^nginx_resilience_upstream_peer_state\{[^}]*peer="\Q$prefix\E[^"]*"[^}]*state="(\w+)"\} 1$/mg) {
        $n{$1}++;
    }
    return join(" ", map { "$_:$n{$_}" } sort keys %n) || "none";
}

sub peer_state {
    my ($peer) = @_;
    my (undef, $m) = http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
    my ($state) = $m =~ /^nginx_resilience_upstream_peer_state\{[^}]*peer="\Q$peer\E"[^}]*state="(\w+)"\} 1$/m;
    return $state // 'none';
}

# the configuration file rewritten by $edit (a sub on its text), reloaded
sub reconfigure {
    my ($edit) = @_;
    my $file = $Test::Nginx::Util::ConfFile;
    open my $in, '<', $file or die "$file: $!";
    my $conf = do { local $/; <$in> };
    close $in;
    $conf = $edit->($conf);
    open my $out, '>', $file or die "$file: $!";
    print $out $conf;
    close $out;
    NR::Nginx::reload_and_wait($Test::Nginx::Util::PidFile);
}

# the bodies of four requests to /, joined
sub bodies {
    my $s = '';
    for (1 .. 4) {
        my (undef, $b) = http_get($ENV{TEST_NGINX_SERVER_PORT}, "/");
        chomp $b;
        $s .= $b;
    }
    return $s;
}

sub doc {
    my ($net) = @_;
    return "[" . join(",", map { qq("$net:$_") } 20001 .. 20040) . "]";
}

# 100 upstreams named after $gen
sub upstreams {
    my ($gen) = @_;
    return join "", map {
        "    upstream gen${gen}_$_ {\n"
        . "        health_check type=tcp interval=60s;\n"
        . "        server 127.0.0.1:$ENV{TEST_NGINX_CLOSED_PORT};\n"
        . "    }\n" } 1 .. 100;
}

$ENV{TEST_NGINX_UPSTREAMS_0} = upstreams(0);

run_tests();

__DATA__

=== TEST 1: a 40-peer set swapped for 40 new peers ends with exactly the new 40
--- http_config
    upstream app {
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms grace=0;
        server 127.0.0.1:$TEST_NGINX_CLOSED_PORT down;   # nginx wants one
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
main::put_file("peers.json", main::doc("127.0.3.1"));
Time::HiRes::sleep(0.6);
my $one = main::peers("127.0.3.1") . " / " . main::peers("127.0.4.1");
main::put_file("peers.json", main::doc("127.0.4.1"));
Time::HiRes::sleep(2);
my $two = main::peers("127.0.3.1") . " / " . main::peers("127.0.4.1");
main::result("$one | $two\n");
--- request
GET /result
--- response_body
up:40 / none | none / up:40
--- timeout: 6
--- no_error_log
[alert]
[crit]



=== TEST 2: a discovery line removed by a reload: its peers drain and leave
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_C_PORT;
        location / { return 200 "C\n"; }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_A_PORT;
        location / { return 200 "A\n"; }
    }
    upstream app {
        health_check type=tcp interval=200ms passes=1;
        discovery file=$TEST_NGINX_HTML_DIR/peers.json interval=100ms;
        server 127.0.0.1:$TEST_NGINX_A_PORT;
    }
--- config
    location / { proxy_pass http://app; }
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $c = "127.0.0.1:$ENV{TEST_NGINX_C_PORT}";
main::put_file("peers.json", qq(["$c"]));
Time::HiRes::sleep(0.6);
my $before = main::peer_state($c);
main::reconfigure(sub { my $s = shift; $s =~ s/^\s*discovery file=.*\n//m; $s });
Time::HiRes::sleep(0.5);
my $after = main::peer_state($c);
main::result("$before $after " . main::bodies() . "\n");
--- request
GET /result
--- response_body
up none AAAA
--- timeout: 15
--- error_log
of a source no longer configured (file), draining
--- no_error_log
[alert]
[crit]



=== TEST 3: three reloads, each with 100 newly named upstreams: the tables of those removed are freed
--- http_config
$TEST_NGINX_UPSTREAMS_0
--- config
    location = /status { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
for my $gen (1 .. 3) {
    my $prev = $gen - 1;
    my $new = main::upstreams($gen);
    main::reconfigure(sub { my $s = shift; $s =~ s/^    upstream gen${prev}_\d+ \{\n.*?\n    \}\n//msg; $s =~ s/^(http \{\n)/$1$new/m; $s });
}
my (undef, $m) = NR::Net::http_get($ENV{TEST_NGINX_SERVER_PORT}, "/status");
my %seen;
$seen{$1}++ while $m =~ /upstream="(gen\d+)_\d+"/g;
main::result(join(" ", map { "$_:" . scalar(() = $m =~ /^nginx_resilience_upstream_peer_state\{upstream="${_}_\d+"[^}]*\} 1$/mg) } sort keys %seen) . "\n");
--- request
GET /result
--- response_body
gen3:100
--- timeout: 40
--- no_error_log
more than 256 upstreams
[alert]
[crit]
