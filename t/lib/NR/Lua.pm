package NR::Lua;

# For the lua-compat suites only: OpenResty's Lua module (Debian's
# libnginx-mod-http-lua and libnginx-mod-http-ndk) loaded before ours,
# and the paths of lua-compat and lua-resty-core, or the whole suite
# skipped with the reason.  "use NR::Lua;" must come before
# "use Test::Nginx::Socket", which reads TEST_NGINX_LOAD_MODULES once.
#
#   TEST_NGINX_LUA_MODULES   the .so files to load first, in order
#                            (default: what Debian's modules-available
#                            files for ndk and lua load)
#   TEST_NGINX_RESTY_CORE    the directory holding resty/core.lua
#                            (default: searched where Debian and
#                            OpenResty install it)
#
# Exports to the configs: $TEST_NGINX_LUA_PATH (a lua_package_path with
# lua-compat/lib and lua-resty-core) and $TEST_NGINX_LUA_COMPAT (the
# same, lua-compat/lib/compat first, for the opt-in shims).

use strict;
use warnings;

use File::Spec;
use Cwd qw(abs_path);

my $Available = '/usr/share/nginx/modules-available';
my $NginxPrefix = '/usr/share/nginx';


# the .so files a Debian modules-available file loads
sub debian_modules {
    my ($conf) = @_;
    my @so;

    open my $in, '<', "$Available/$conf" or return ();

    while (my $line = <$in>) {
        next unless $line =~ /^\s*load_module\s+(\S+?);/;
        my $so = $1;
        $so = "$NginxPrefix/$so" unless $so =~ m{^/};
        push @so, $so;
    }

    return @so;
}


sub skip_all {
    my ($why) = @_;
    print "1..0 # SKIP $why\n";
    exit 0;
}


sub import {
    my @mods = grep { length }
               split /\s+/, $ENV{TEST_NGINX_LUA_MODULES}
                            // join(' ', debian_modules('mod-http-ndk.conf'),
                                      debian_modules('mod-http-lua.conf'));

    skip_all('OpenResty\'s Lua module is not installed (Debian: '
             . 'libnginx-mod-http-lua, libnginx-mod-http-ndk; or set '
             . 'TEST_NGINX_LUA_MODULES)')
        unless @mods && !grep { !-f } @mods;

    my ($core) = grep { -f "$_/resty/core.lua" }
                 grep { defined }
                 $ENV{TEST_NGINX_RESTY_CORE}, '/usr/share/lua/5.1',
                 '/usr/local/share/lua/5.1', '/usr/local/openresty/lualib';

    skip_all('lua-resty-core is not installed (Debian: lua-resty-core; '
             . 'or set TEST_NGINX_RESTY_CORE)')
        unless $core;

    my $lib = abs_path(File::Spec->catdir(
                  (File::Spec->splitpath(abs_path(__FILE__)))[1],
                  '..', '..', '..', 'lua-compat', 'lib'));

    $ENV{TEST_NGINX_LOAD_MODULES} =
        join ' ', @mods, $ENV{TEST_NGINX_LOAD_MODULES} // ();

    $ENV{TEST_NGINX_LUA_PATH} = "$lib/?.lua;$core/?.lua;;";
    $ENV{TEST_NGINX_LUA_COMPAT} = "$lib/compat/?.lua;$lib/?.lua;$core/?.lua;;";
}


1;
