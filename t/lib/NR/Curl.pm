package NR::Curl;

# curl as the HTTP/2 client of suites: cleartext HTTP/2 with prior
# knowledge (h2c), and a transcript of the response that a block can
# fetch and check with the usual sections.

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempfile);

our @EXPORT_OK = qw(curl_http2_missing h2c_transcript);


# why curl cannot be the HTTP/2 client here, or '' when it can
sub curl_http2_missing {
    my $v = `curl -V 2>/dev/null` // '';

    return 'curl is not installed' unless $v =~ /^curl /;
    return 'curl has no HTTP/2 ("curl -V" lists no HTTP2 feature)'
        unless $v =~ /^Features:.*\bHTTP2\b/m;
    return '';
}


# h2c_transcript(port => N, path => '/x', headers => ['name: value', ...],
#                [body => $bytes,] file => $path)
#
# POSTs over h2c and writes to $file the status line ("HTTP/2 200"), the
# response headers but date and server, one per line as received, and
# "body: N bytes"; curl's own failure, if any, instead.  Without a body,
# the request is one HEADERS frame that ends the stream.  With one, a
# server that answers before it has read the body ends the stream with
# RST_STREAM(NO_ERROR), which curl 7.88 may report as error 92: send a
# body only where the server reads it first.
sub h2c_transcript {
    my (%a) = @_;
    my @data;

    if (defined $a{body}) {
        my ($in, $file) = tempfile(UNLINK => 1);
        binmode $in;
        print $in $a{body};
        close $in;
        @data = ('--data-binary', "\@$file");
    }

    my @cmd = ('curl', '-sS', '-i', '--http2-prior-knowledge', '-m', '10',
               '-X', 'POST', @data,
               (map { ('-H', $_) } @{ $a{headers} || [] }),
               "http://127.0.0.1:$a{port}$a{path}");

    open my $curl, '-|', @cmd or die "curl: $!";
    binmode $curl;
    my $raw = do { local $/; <$curl> } // '';
    close $curl;

    my $text;

    if ($? != 0) {
        $text = "curl failed: exit " . ($? >> 8) . "\n";

    } else {
        my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
        my @lines = split /\r\n/, $head;
        my $status = shift @lines;
        $status =~ s/\s+$//;

        $text = join '', "$status\n",
                         map { "$_\n" } grep { !/^(?:date|server):/i } @lines;
        $text .= "body: " . length($rest // '') . " bytes\n";
    }

    open my $out, '>', $a{file} or die "$a{file}: $!";
    print $out $text;
    close $out;

    return $text;
}

1;
