# ngx_http_deadline_module and gRPC over HTTP/2: a cleartext HTTP/2
# listener (h2c), a gRPC client played by curl --http2-prior-knowledge,
# and grpc_pass to an h2c upstream.  Each block's init runs curl against
# the h2c server and writes what came back (status line, headers but date
# and server, body size) to html/; the block's request fetches that
# transcript from the plain HTTP/1.1 server, and the usual sections check
# it.

BEGIN {
    unshift @INC, 't/lib';
    require NR::Curl;
    my $why = NR::Curl::curl_http2_missing();
    if ($why) {
        print "1..0 # SKIP $why\n";
        exit 0;
    }
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use NR::Redis qw(free_port);
use NR::Net;
use Time::HiRes ();

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');

$ENV{TEST_NGINX_H2_PORT} = free_port();
$ENV{TEST_NGINX_H2_BACKEND_PORT} = free_port();
$ENV{TEST_NGINX_SLOW_PORT} = free_port();

# a gRPC call to the h2c server with this grpc-timeout (and body), as
# a transcript in html/h2.txt
sub grpc_call {
    my ($timeout, $body) = @_;
    NR::Curl::h2c_transcript(port => $ENV{TEST_NGINX_H2_PORT},
                             path => '/pkg.Svc/Call',
                             headers => ['content-type: application/grpc',
                                         'te: trailers',
                                         "grpc-timeout: $timeout"],
                             body => $body,
                             file => "$Test::Nginx::Util::HtmlDir/h2.txt");
}

run_tests();

__DATA__

=== TEST 1: over h2c, a spent grpc-timeout gets the gRPC answer: 200, grpc-status 4, no body
The request has no body, so that its HEADERS frame ends the stream.  With
a body still on its way, nginx ends the stream after the complete answer
with RST_STREAM(NO_ERROR), as RFC 9113 8.1 allows; curl 7.88, when both
frames come in one read, reports error 92 and drops the answer.
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location /pkg.Svc/ {
            deadline_from grpc-timeout grpc;
            grpc_pass grpc://127.0.0.1:$TEST_NGINX_H2_BACKEND_PORT;
        }
    }
--- config
    location = /metrics { resilience_status prometheus; }
--- init
main::grpc_call('0m');
--- request
GET /h2.txt
--- response_body
HTTP/2 200
content-type: application/grpc
content-length: 0
grpc-status: 4
grpc-message: deadline exceeded before the upstream
body: 0 bytes
--- error_log
deadline: 0 ms left, less than 0: failing fast
--- no_error_log
[error]



=== TEST 2: grpc_pass to an h2c upstream: it gets what is left, less the offset, in grpc-timeout
No body either, for the reason TEST 1 gives: grpc_pass streams the body,
the upstream here answers on the headers, and when the answer reaches
curl before curl's DATA frame reached nginx, nginx ends the stream with
RST_STREAM(NO_ERROR), which curl 7.88 may report as error 92 (seen once
in CI).
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location /pkg.Svc/ {
            deadline_from grpc-timeout grpc;
            deadline_offset 500ms;
            deadline_propagate grpc-timeout grpc;
            grpc_pass grpc://127.0.0.1:$TEST_NGINX_H2_BACKEND_PORT;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_BACKEND_PORT http2;
        location / {
            # the next hop: what it was told, and its own budget from it
            deadline_from grpc-timeout grpc;
            add_header x-told $http_grpc_timeout;
            add_header x-left $deadline_remaining_ms;
            return 200;
        }
    }
--- config
    location = /metrics { resilience_status prometheus; }
--- init
main::grpc_call('5S');
--- request
GET /h2.txt
--- response_body_like eval
qr/\AHTTP\/2 200
content-type: text\/plain
content-length: 0
x-told: (4[0-4]\d\d|4500)m
x-left: (4[0-4]\d\d|4500)
body: 0 bytes
\z/
--- no_error_log
[error]



=== TEST 3: grpc_pass to an upstream slower than the budget: cut at the deadline, answered the gRPC way (200, grpc-status 4), not 504
The upstream (an h2c server proxying to a server that answers after 3 s)
has not begun its response when the 400 ms budget ends.
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location /pkg.Svc/ {
            deadline_from grpc-timeout grpc;
            grpc_pass grpc://127.0.0.1:$TEST_NGINX_H2_BACKEND_PORT;
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_BACKEND_PORT http2;
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_SLOW_PORT;
        }
    }
--- config
    location = /metrics { resilience_status prometheus; }
--- init
NR::Net::slow_server($ENV{TEST_NGINX_SLOW_PORT}, 3, 5);
my $start = Time::HiRes::time();
my $text = main::grpc_call('400m');
my $took = Time::HiRes::time() - $start;
open my $fh, '>>', "$Test::Nginx::Util::HtmlDir/h2.txt" or die $!;
print $fh ($took >= 0.35 && $took < 1.5 ? "cut at the deadline\n"
                                        : "took $took s\n");
close $fh;
--- request
GET /h2.txt
--- response_body
HTTP/2 200
content-type: application/grpc
content-length: 0
grpc-status: 4
grpc-message: deadline exceeded while waiting for the upstream
body: 0 bytes
cut at the deadline
--- error_log
deadline: the upstream was cut, answering gRPC status 4
--- no_error_log
[alert]
