#!/usr/bin/env bash
#
# t/compat/build-lua-upstream.sh ANCHORS-DIR
#
# lua-resty-upstream-healthcheck's suite (the baseline of the lua_hc
# suite) needs OpenResty's lua-upstream-nginx-module (ngx.upstream), which
# Debian does not package.  This builds it, from ANCHORS-DIR/
# lua-upstream-nginx-module and the API header of ANCHORS-DIR/
# lua-nginx-module (the tag of Debian's libnginx-mod-http-lua, v0.10.23 on
# Debian 12), against Debian's nginx-dev tree, into
# ANCHORS-DIR/lua-upstream-nginx-module/ngx_http_lua_upstream_module.so.
# Needs libluajit2-5.1-dev.  Nothing of it enters the project.

set -euo pipefail

anchors="$(cd "${1:?usage: $0 ANCHORS-DIR}" && pwd)"
mod="$anchors/lua-upstream-nginx-module"
api="$anchors/lua-nginx-module/src/api"
src=/usr/share/nginx/src
work="$anchors/.build-lua-upstream"
out="$mod/ngx_http_lua_upstream_module.so"

[ -f "$mod/config" ] || { echo "$mod missing" >&2; exit 1; }
[ -f "$api/ngx_http_lua_api.h" ] || { echo "$api missing" >&2; exit 1; }
[ -f "$src/conf_flags" ] || { echo "$src missing (nginx-dev)" >&2; exit 1; }
[ -d /usr/include/luajit-2.1 ] \
    || { echo "/usr/include/luajit-2.1 missing (libluajit2-5.1-dev)" >&2;
         exit 1; }

if [ -f "$out" ] && [ "$out" -nt "$mod/src/ngx_http_lua_upstream_module.c" ]
then
    echo "$out"
    exit 0
fi

rm -rf "$work"
mkdir -p "$work/src"
(cd "$src" && tar cf - --exclude=./objs --exclude=./Makefile \
     --exclude=./debian .) | (cd "$work/src" && tar xf -)

# shellcheck disable=SC1091
. "$src/conf_flags"

(cd "$work/src" && ./configure "${NGX_CONF_FLAGS[@]}" --with-compat \
    "--with-cc-opt=-fPIC -O2 -I$api -I/usr/include/luajit-2.1" \
    "--builddir=$work/objs" "--add-dynamic-module=$mod") \
    >"$work/configure.log" 2>&1 \
    || { tail -20 "$work/configure.log" >&2; exit 1; }

make -C "$work/src" -f "$work/objs/Makefile" modules >"$work/make.log" 2>&1 \
    || { grep -E "error" "$work/make.log" | head -20 >&2; exit 1; }

cp "$work/objs/ngx_http_lua_upstream_module.so" "$out"
echo "$out"
