# Breaker keys are bytes from the wire: whatever they hold, the
# Prometheus text passes promtool and every JSON text parses, with the
# key escaped; per-key series are bounded.

BEGIN {
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print "1..0 # SKIP promtool (Debian package prometheus) is not "
              . "installed: ./build.sh deps installs it\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Net qw(http_get);
use NR::Html qw(result);

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_SERVER_PORT} = $Test::Nginx::Util::ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = $Test::Nginx::Util::HtmlDir;

# promtool's verdict on a Prometheus text, "ok" or its complaint
sub promtool {
    my ($text) = @_;
    my $f = "$Test::Nginx::Util::HtmlDir/metrics.prom";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < $f 2>&1`;
    return $? == 0 ? "ok" : "promtool: $out";
}

# a JSON text decoded strictly (valid UTF-8 first), or the complaint
sub json_check {
    my ($text) = @_;
    require Encode;
    require JSON::PP;
    my $copy = $text;
    my $chars = eval { Encode::decode('UTF-8', $copy, Encode::FB_CROAK()) };
    return (undef, "invalid UTF-8: $@") unless defined $chars;
    my $doc = eval { JSON::PP->new->decode($chars) };
    return (undef, "invalid JSON: $@") unless $doc;
    return ($doc, "ok");
}

run_tests();

__DATA__

=== TEST 1: keys of invalid UTF-8 and control bytes: the Prometheus text passes promtool, the JSON parses, the key is escaped
--- http_config
    breaker_zone breakers 1m;
--- config
    location = /backend { return 200 "ok\n"; }
    location /tenant {
        breaker tenants zone=breakers key=$http_x_tenant;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location = /metrics { resilience_status prometheus; }
    location = /status.json { resilience_status json; }
    location /admin/ { resilience_admin; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $key = "caf\xe9\xff\x01\x1b\x7f\"q\\b caf\xc3\xa9 \xed\xa0\x80 \xc0\xaf";
NR::Net::http_get($port, "/tenant", "X-Tenant: $key");
my $want = 'caf\xe9\xff\x01\x1b\x7f"q\x5cb caf' . "\xc3\xa9"
           . ' \xed\xa0\x80 \xc0\xaf';
my $out = '';
my (undef, $prom) = NR::Net::http_get($port, "/metrics");
$out .= "prometheus: " . main::promtool($prom) . "\n";
my (undef, $json) = NR::Net::http_get($port, "/status.json");
my ($doc, $v) = main::json_check($json);
$out .= "json: $v\n";
if ($doc) {
    my ($s) = grep { ($_->{labels}{key} // '') ne '' }
              @{$doc->{metrics}{nginx_resilience_breaker_state}{samples}};
    my $got = Encode::encode('UTF-8', $s->{labels}{key} // '');
    $out .= "json key: " . ($got eq $want ? "escaped" : "wrong: $got") . "\n";
}
my (undef, $adm) = NR::Net::http_get($port, "/admin/breakers");
($doc, $v) = main::json_check($adm);
$out .= "admin: $v\n";
if ($doc) {
    my $got = Encode::encode('UTF-8', $doc->{breakers}[0]{key} // '');
    $out .= "admin key: " . ($got eq $want ? "escaped" : "wrong: $got") . "\n";
}
main::result($out);
--- request
GET /result
--- response_body
prometheus: ok
json: ok
json key: escaped
admin: ok
admin key: escaped
--- no_error_log
[error]
[alert]



=== TEST 2: metrics_keys= caps the keys with series of their own, the busiest first; each keyed breaker keeps its aggregates
--- http_config
    breaker_zone breakers 1m metrics_keys=2;
--- config
    location = /backend { return 200 "ok\n"; }
    location /tenant {
        breaker tenants zone=breakers key=$arg_k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /api {
        breaker orders zone=breakers;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location = /metrics { resilience_status prometheus; }
    location = /result {
        default_type text/plain;
        alias $TEST_NGINX_HTML_DIR/result.txt;
    }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my %n = (a => 5, b => 3, c => 1, d => 1);
for my $k (sort keys %n) {
    NR::Net::http_get($port, "/tenant?k=$k") for 1 .. $n{$k};
}
NR::Net::http_get($port, "/api");
my (undef, $prom) = NR::Net::http_get($port, "/metrics");
my %keys = map { $_ => 1 }
           $prom =~ /^nginx_resilience_breaker_state\{breaker="tenants",key="(\w+)"\}/mg;
my ($closed) = $prom =~ /^nginx_resilience_breaker_keys\{breaker="tenants",state="closed"\} (\d+)$/m;
my ($left) = $prom =~ /^nginx_resilience_breaker_keys_unreported\{breaker="tenants"\} (\d+)$/m;
my $keyless = $prom =~ /^nginx_resilience_breaker_state\{breaker="orders",key=""\} 0$/m
              ? "yes" : "no";
main::result("promtool: " . main::promtool($prom) . "\n"
             . "keys with series: " . join(' ', sort keys %keys) . "\n"
             . "closed keys: " . ($closed // 'none') . "\n"
             . "unreported: " . ($left // 'none') . "\n"
             . "keyless reported: $keyless\n");
--- request
GET /result
--- response_body
promtool: ok
keys with series: a b
closed keys: 4
unreported: 2
keyless reported: yes
--- no_error_log
[error]
[alert]



=== TEST 3: metrics_keys= takes a number
--- http_config
    breaker_zone breakers 1m metrics_keys=many;
--- config
    location /x { return 200; }
--- must_die
--- error_log eval
qr/metrics_keys|"many"/
