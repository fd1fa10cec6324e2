# Every built module loads into the nginx under test in the documented
# order (core first), and every example in conf-examples/ passes nginx -t.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Basename qw(dirname basename);

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my @modules = grep { /ngx_http_\w+_module\.so$/ && !/_test_module\.so$/ }
              split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
my $examples = $ENV{TEST_NGINX_CONF_EXAMPLES} || 'conf-examples';

plan skip_all => 'TEST_NGINX_LOAD_MODULES lists no module' unless @modules;

sub nginx_t {
    my ($prefix, $conf) = @_;
    my $out = `$nginx -t -p $prefix/ -c $conf 2>&1`;
    return ($? >> 8, $out);
}

sub prefix {
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    symlink dirname($modules[0]), "$dir/modules" or die "symlink: $!";
    return $dir;
}

is(basename($modules[0]), 'ngx_http_resilience_module.so',
   'the core module comes first in the load order');

{
    my $dir = prefix();
    my $conf = "$dir/all.conf";

    open my $fh, '>', $conf or die $!;
    print $fh "load_module $_;\n" for @modules;
    print $fh "error_log logs/error.log;\npid logs/nginx.pid;\n",
              "events {}\nhttp { server { listen 127.0.0.1:1; } }\n";
    close $fh;

    my ($rc, $out) = nginx_t($dir, $conf);
    is($rc, 0, "all " . scalar(@modules) . " modules load in order")
        or diag $out;
    like($out, qr/test is successful/, 'nginx -t says so');
}

{
    my $dir = prefix();
    my $conf = "$dir/dup.conf";

    open my $fh, '>', $conf or die $!;
    print $fh "load_module $modules[0];\nload_module $modules[0];\n",
              "events {}\n";
    close $fh;

    my ($rc, $out) = nginx_t($dir, $conf);
    isnt($rc, 0, 'loading the core module twice is refused');
    like($out, qr/module "ngx_http_resilience_module" is already loaded/,
         'with nginx\'s own message');
}

for my $example (sort glob("$examples/*.conf")) {
    my $dir = prefix();
    my ($rc, $out) = nginx_t($dir, $example);

    is($rc, 0, "nginx -t passes on " . basename($example)) or diag $out;
}

done_testing();
