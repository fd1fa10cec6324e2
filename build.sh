#!/usr/bin/env bash
#
# nginx-resilience: the one entry point.
#
#   ./build.sh deps            install the Debian packages needed
#   ./build.sh build           build every module into build/modules/
#   ./build.sh test [--valgrind] [t/NNN-x.t ...]
#                              deps + build + Redis + the Test::Nginx suites
#   ./build.sh run [stop]      start (or stop) the quickstart nginx
#   ./build.sh bench           wrk + callgrind benchmarks, as a table
#   ./build.sh bench accuracy  rate limits: configured vs admitted rate
#   NGINX_SRC=<tree> ./build.sh fuzz [target ...]
#                              libFuzzer over the parsers of outside input
#   ./build.sh compat <anchors-dir> [suite ...]
#                              the anchors' own suites (nginx-tests,
#                              lua-resty-*), stock vs ours (t/compat)
#
# NGINX_SRC=<nginx source tree> builds against that tree (and its nginx
# binary) instead of Debian's nginx-dev tree and /usr/sbin/nginx.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$ROOT/build"

# a build for another nginx tree lives apart, so both can coexist
if [ -n "${NGINX_SRC:-}" ]; then
    BUILD="$ROOT/build/custom"
fi

DEBIAN_SRC=/usr/share/nginx/src

PACKAGES=(
    build-essential nginx-core nginx-dev
    libhiredis-dev libpcre2-dev libcjson-dev libssl-dev zlib1g-dev
    redis-server redis-tools
    libtest-base-perl libtest-longstring-perl libtext-diff-perl
    libipc-run-perl liburi-perl libwww-perl
    valgrind wrk apache2-utils curl dnsmasq-base
    libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core
    prometheus openssl
)

# only for ./build.sh compat: nginx-tests load Debian's perl module (nginx
# -V says --with-http_perl_module=dynamic), the real Test::Nginx wants
# List::MoreUtils, lua-resty-upstream-healthcheck's suite echo_sleep and
# lua-upstream-nginx-module (built by t/compat/build-lua-upstream.sh)
COMPAT_PACKAGES=(libnginx-mod-http-perl liblist-moreutils-perl
                 libnginx-mod-http-echo libluajit2-5.1-dev)

# the feature modules, in load order, after the core module
MODULES=(
    ngx_http_resilience_module
    ngx_http_breaker_module
    ngx_http_ratelimit_module
    ngx_http_deadline_module
    ngx_http_upstream_discovery_module
)

CC_OPT="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security"
CC_OPT="$CC_OPT -fPIC -D_FORTIFY_SOURCE=2"
CC_OPT="$CC_OPT -Wall -Wextra -Wno-unused-parameter -Werror"
LD_OPT="-Wl,-z,relro -Wl,-z,now -fPIC"


say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }


as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}


cmd_deps() {
    local missing=() p

    for p in "${PACKAGES[@]}" "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
                | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done

    if [ ${#missing[@]} -eq 0 ]; then
        say "deps: all $((${#PACKAGES[@]} + $#)) packages present"
        return 0
    fi

    say "deps: installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}


nginx_src() {
    if [ -n "${NGINX_SRC:-}" ]; then
        [ -f "$NGINX_SRC/auto/configure" ] || [ -f "$NGINX_SRC/configure" ] \
            || die "NGINX_SRC=$NGINX_SRC is not an nginx source tree"
        (cd "$NGINX_SRC" && pwd)
    else
        [ -f "$DEBIAN_SRC/configure" ] \
            || die "$DEBIAN_SRC missing: run ./build.sh deps (nginx-dev)"
        echo "$DEBIAN_SRC"
    fi
}


# the nginx binary the modules are built for
nginx_binary() {
    if [ -n "${NGINX_SRC:-}" ]; then
        echo "$BUILD/objs/nginx"
    else
        echo /usr/sbin/nginx
    fi
}


cmd_build() {
    local src flags stamp want tree configure so name

    src="$(nginx_src)"
    tree="$BUILD/nginx-src"

    if [ -z "${NGINX_SRC:-}" ]; then
        # shellcheck disable=SC1091
        . "$src/conf_flags"
        flags=("${NGX_CONF_FLAGS[@]}")
    else
        flags=(--with-compat --with-debug --with-threads
               --with-http_realip_module --with-http_stub_status_module
               --with-http_ssl_module --with-http_v2_module)
    fi

    flags+=(--with-compat
            "--with-cc-opt=$CC_OPT" "--with-ld-opt=$LD_OPT"
            "--builddir=$BUILD/objs"
            "--add-dynamic-module=$ROOT"
            "--add-dynamic-module=$ROOT/t/modules/test")

    # configure writes a Makefile where it runs: work on a copy of the
    # tree, so that the system's (or the user's) tree stays untouched

    want="$src $(printf '%s\n' "${flags[@]}" | sha1sum | cut -c1-12)"
    want="$want $( (cat "$ROOT/config" "$ROOT"/modules/*/config.module \
                        "$ROOT/t/modules/test/config" 2>/dev/null || true) \
                  | sha1sum | cut -c1-12)"
    want="$want $( (ls "$ROOT"/modules/*/*.[ch] 2>/dev/null || true) \
                  | sha1sum | cut -c1-12)"
    stamp="$BUILD/configure.stamp"

    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
            || [ ! -f "$BUILD/objs/Makefile" ]; then
        say "build: configuring against $src"
        rm -rf "$tree" "$BUILD/objs"
        mkdir -p "$tree"
        (cd "$src" && tar cf - --exclude=./objs --exclude=./Makefile \
             --exclude=./debian .) | (cd "$tree" && tar xf -)

        configure=./configure
        [ -x "$tree/configure" ] || configure=./auto/configure

        (cd "$tree" && $configure "${flags[@]}") > "$BUILD/configure.log" 2>&1 \
            || { tail -30 "$BUILD/configure.log"; die "configure failed"; }
        echo "$want" > "$stamp"
    fi

    say "build: compiling"
    if [ -n "${NGINX_SRC:-}" ]; then
        make -C "$tree" -f "$BUILD/objs/Makefile" -j"$(nproc)" \
            >"$BUILD/make.log" 2>&1 \
            || { grep -E "error:|Error [0-9]" "$BUILD/make.log" | head -40;
                 die "make failed (see build/make.log)"; }
    else
        make -C "$tree" -f "$BUILD/objs/Makefile" -j"$(nproc)" modules \
            >"$BUILD/make.log" 2>&1 \
            || { grep -E "error:|Error [0-9]" "$BUILD/make.log" | head -40;
                 die "make failed (see build/make.log)"; }
    fi

    mkdir -p "$BUILD/modules" "$BUILD/test-modules"
    rm -f "$BUILD"/modules/*.so "$BUILD"/test-modules/*.so

    for so in "$BUILD"/objs/*.so; do
        name="$(basename "$so")"
        case "$name" in
            ngx_http_resilience_test_module.so)
                cp "$so" "$BUILD/test-modules/" ;;
            *)  cp "$so" "$BUILD/modules/" ;;
        esac
    done

    say "build: $(cd "$BUILD/modules" && echo *.so)"
}


# the built modules, in load order
load_modules() {
    local m list=""

    for m in "${MODULES[@]}"; do
        if [ -f "$BUILD/modules/$m.so" ]; then
            list="$list $BUILD/modules/$m.so"
        fi
    done

    echo "${list# }"
}


free_port() {
    local port

    # below the ephemeral range, where client sockets can hold a port
    for port in $(shuf -i 20000-32000 -n 50); do
        if ! (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done

    die "no free port found"
}


redis_start() {
    local dir="$1" port="$2" i

    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" \
        --appendonly no --daemonize yes --dir "$dir" \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        || die "redis-server failed to start (see $dir/redis.log)"

    for i in $(seq 1 50); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            return 0
        fi
        sleep 0.1
    done

    die "redis-server did not answer on port $port"
}


redis_stop() {
    local dir="$1" pid

    if [ -f "$dir/redis.pid" ]; then
        pid="$(cat "$dir/redis.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        rm -f "$dir/redis.pid"
    fi
}


cmd_test() {
    local valgrind=0 files=() inc=() rc dir port

    while [ $# -gt 0 ]; do
        case "$1" in
            --valgrind) valgrind=1 ;;
            *) files+=("$1") ;;
        esac
        shift
    done

    [ ${#files[@]} -gt 0 ] || files=(t/)

    cmd_deps
    cmd_build

    dir="$BUILD/test-redis"
    port="$(free_port)"
    redis_start "$dir" "$port"
    # shellcheck disable=SC2064
    trap "redis_stop '$dir'" EXIT

    export TEST_NGINX_BINARY="${TEST_NGINX_BINARY:-$(nginx_binary)}"
    # the test module (t/modules/test) drives core's C API from locations
    export TEST_NGINX_TEST_MODULE
    TEST_NGINX_TEST_MODULE="$BUILD/test-modules/ngx_http_resilience_test_module.so"
    export TEST_NGINX_LOAD_MODULES
    TEST_NGINX_LOAD_MODULES="$(load_modules) $TEST_NGINX_TEST_MODULE"
    export TEST_NGINX_REDIS_PORT="$port"
    export TEST_NGINX_CONF_EXAMPLES="$ROOT/conf-examples"

    if [ "$valgrind" = 1 ]; then
        export TEST_NGINX_USE_VALGRIND=1
    fi

    if perl -MTest::Nginx::Socket -e1 2>/dev/null; then
        say "test: using the installed Test::Nginx"
    else
        say "test: using the project's harness in t/lib"
        inc=(-I "$ROOT/t/lib")
    fi

    say "test: nginx $TEST_NGINX_BINARY, Redis on port $port"

    cd "$ROOT"
    set +e
    prove "${inc[@]}" -r "${files[@]}"
    rc=$?
    set -e

    return $rc
}


RUN_DIR="$BUILD/run"
RUN_PORT=8080


cmd_run() {
    local redis_port=6379 url

    if [ "${1:-}" = stop ]; then
        if [ -f "$RUN_DIR/logs/nginx.pid" ]; then
            /usr/sbin/nginx -p "$RUN_DIR/" -c "$ROOT/conf-examples/quickstart.conf" \
                -s quit 2>/dev/null || true
        fi
        redis_stop "$RUN_DIR/redis"
        say "run: stopped"
        return 0
    fi

    cmd_deps
    cmd_build

    mkdir -p "$RUN_DIR/logs"
    ln -sfn "$BUILD/modules" "$RUN_DIR/modules"

    if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
        say "run: using the Redis already on 127.0.0.1:$redis_port"
    elif (echo > "/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null; then
        say "run: port $redis_port is taken and is not Redis: running without"
    else
        redis_start "$RUN_DIR/redis" "$redis_port"
        say "run: started Redis on 127.0.0.1:$redis_port"
    fi

    if [ -f "$RUN_DIR/logs/nginx.pid" ] \
            && kill -0 "$(cat "$RUN_DIR/logs/nginx.pid")" 2>/dev/null; then
        say "run: reloading the running nginx"
        "$(nginx_binary)" -p "$RUN_DIR/" \
            -c "$ROOT/conf-examples/quickstart.conf" -s reload
    else
        "$(nginx_binary)" -p "$RUN_DIR/" \
            -c "$ROOT/conf-examples/quickstart.conf" \
            || die "nginx failed to start (see $RUN_DIR/logs/error.log)"
    fi

    url="http://127.0.0.1:$RUN_PORT"
    cat <<EOF

nginx-resilience is running (prefix $RUN_DIR, log $RUN_DIR/logs/error.log).
Try:

  curl -i $url/                      # a location proxied to a demo upstream
  for i in 1 2 3 4 5 6; do curl -si $url/flaky | head -1; done
                                     # a breaker opening: 502 x5, then 503
  curl -i $url/flaky                 # open: 503, Retry-After, X-Breaker: open
  for i in 1 2 3 4 5; do curl -si $url/limited | head -1; done
                                     # a rate limit: 200 x4, then 429
  curl -i $url/limited               # RateLimit headers, Retry-After when 429
  curl    $url/deadline              # the budget left, as the upstream saw it
  curl -H 'grpc-timeout: 50m' $url/deadline   # a caller's smaller budget
  curl    $url/status                # metrics: Redis, breakers, limits, deadlines, peers (127.0.0.1:8082 goes down within 6 s)
  curl    $url/status.json           # the same as JSON

Stop it with: ./build.sh run stop
EOF
}


cmd_bench() {
    cmd_deps
    cmd_build

    if [ "${1:-}" = accuracy ]; then
        shift
        exec "$ROOT/t/bench/accuracy.sh" "$@"
    fi

    exec "$ROOT/t/bench/bench.sh" "$@"
}


# the fuzz targets link nginx's own objects: a whole source tree is needed
cmd_fuzz() {
    [ -n "${NGINX_SRC:-}" ] \
        || die "fuzz needs NGINX_SRC=<an nginx source tree> (Debian's nginx-dev has headers only)"

    cmd_deps
    dpkg-query -W -f='${Status}' clang 2>/dev/null \
        | grep -q "install ok installed" \
        || { as_root apt-get update -q;
             as_root env DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q --no-install-recommends clang; }
    cmd_build

    exec "$ROOT/t/fuzz/fuzz.sh" "$BUILD/objs" "$BUILD/nginx-src" "$@"
}


# the anchors' own test suites, fetched beforehand into <anchors-dir>
# (never committed): stock nginx first, then translated for our modules
cmd_compat() {
    local anchors="${1:-}"

    if [ -z "$anchors" ] || [ ! -d "$anchors" ]; then
        die "usage: ./build.sh compat <anchors-dir> [suite ...] (see t/compat/README.md)"
    fi
    shift

    cmd_deps "${COMPAT_PACKAGES[@]}"
    cmd_build

    COMPAT_ROOT="$ROOT" COMPAT_NGINX="$(nginx_binary)" \
        COMPAT_MODULES="$(load_modules)" COMPAT_WORK="$BUILD/compat" \
        perl "$ROOT/t/compat/run.pl" "$anchors" "$@"
}


main() {
    local cmd="${1:-}"

    [ $# -gt 0 ] && shift

    case "$cmd" in
        deps)  cmd_deps ;;
        build) cmd_deps; cmd_build ;;
        test)  cmd_test "$@" ;;
        run)   cmd_run "$@" ;;
        bench) cmd_bench "$@" ;;
        fuzz)  cmd_fuzz "$@" ;;
        compat) cmd_compat "$@" ;;
        *)
            sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'
            [ -z "$cmd" ] || exit 2
            ;;
    esac
}


main "$@"
