package NR::Html;

# Files in the block's html directory, for init code: switches and
# documents nginx reads (written whole: a temporary file renamed into
# place, so nginx never reads half of one), and result.txt, which a block
# fetches to check what its init code found.

use strict;
use warnings;

use Exporter 'import';

our @EXPORT_OK = qw(put_file result);


sub put_file {
    my ($name, $text) = @_;
    my $f = "$Test::Nginx::Util::HtmlDir/$name";
    open my $fh, '>', "$f.tmp" or die "$f: $!";
    print $fh $text;
    close $fh;
    rename "$f.tmp", $f or die "$f: $!";
}


sub result {
    put_file("result.txt", $_[0]);
}

1;
