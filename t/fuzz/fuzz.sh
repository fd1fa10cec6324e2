#!/usr/bin/env bash
#
# t/fuzz/fuzz.sh: builds the fuzz targets of t/fuzz with clang's
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, and runs each
# for a while.  ./build.sh fuzz runs it after building against a whole
# nginx source tree (NGINX_SRC): the targets link nginx's own objects
# (pools, strings, addresses, PCRE2 through ngx_regex), which Debian's
# nginx-dev, headers only, does not have.
#
#   ./t/fuzz/fuzz.sh OBJS SRC [target ...]
#
# OBJS is the nginx build's objs directory, SRC its source tree.
#
# Environment:
#
#   FUZZ_SECONDS=60     how long each target runs
#   FUZZ_JOBS=1         libFuzzer jobs per target (-jobs, -workers)
#   CC_FUZZ=clang
#
# Every target starts from its seeds in t/fuzz/corpus/<target> (copied to
# build/fuzz/corpus/<target>, which keeps what the runs add); a crash, a
# sanitizer report or a failed invariant stops it, leaves the input in
# build/fuzz/artifacts/<target>/ and makes this script fail.  Reproduce:
# build/fuzz/<target> build/fuzz/artifacts/<target>/crash-...

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OBJS="$(cd "$1" && pwd)"
SRC="$(cd "$2" && pwd)"
shift 2

OUT="$ROOT/build/fuzz"
CC_FUZZ="${CC_FUZZ:-clang}"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
JOBS="${FUZZ_JOBS:-1}"

TARGETS=(deadline_value discovery_document probe_answer breaker_admin)
[ $# -gt 0 ] && TARGETS=("$@")

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'fuzz.sh: %s\n' "$*" >&2; exit 1; }

command -v "$CC_FUZZ" >/dev/null \
    || die "$CC_FUZZ is not installed (apt-get install clang)"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-g -O1 -fno-omit-frame-pointer -Wno-unused-function"
INCS=(-I "$SRC/src/core" -I "$SRC/src/event" -I "$SRC/src/event/modules"
      -I "$SRC/src/os/unix" -I "$SRC/src/http" -I "$SRC/src/http/modules"
      -I "$SRC/src/http/v2" -I "$OBJS" -I "$ROOT/modules/core"
      -I "$ROOT/modules/upstream" -I "$ROOT/modules/breaker")
[ -d "$SRC/src/event/quic" ] && INCS+=(-I "$SRC/src/event/quic")
LIBS=(-lhiredis -lcjson -lpcre2-8 -lssl -lcrypto -lz -lcrypt -lpthread)

mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/artifacts"

# nginx's objects, as an archive: its main() renamed, libFuzzer has one

say "fuzz: nginx objects from $OBJS"
rm -f "$OUT/libnginx.a"
objcopy --redefine-sym main=ngx_fuzz_nginx_main \
    "$OBJS/src/core/nginx.o" "$OUT/obj/nginx.o"
find "$OBJS/src" -name '*.o' ! -path '*/src/core/nginx.o' -print0 \
    | xargs -0 ar rcs "$OUT/libnginx.a" "$OBJS/ngx_modules.o" \
                       "$OUT/obj/nginx.o"

# the modules' sources each target does not include itself

compile() {
    local src="$1" obj
    obj="$OUT/obj/$(basename "$src" .c).o"
    "$CC_FUZZ" -c $CFLAGS $SAN -fsanitize=fuzzer-no-link "${INCS[@]}" \
        "$src" -o "$obj"
    echo "$obj"
}

core_objs=()
for f in "$ROOT"/modules/core/*.c; do
    core_objs+=("$(compile "$f")")
done

# a target's own sources: the module file it includes is left out

module_objs() {
    local module="$1" skip="$2" f
    for f in "$ROOT/modules/$module"/*.c; do
        [ "$(basename "$f")" = "$skip" ] && continue
        compile "$f"
    done
}

failed=()

for t in "${TARGETS[@]}"; do
    [ -f "$ROOT/t/fuzz/$t.c" ] || die "no target t/fuzz/$t.c"

    case "$t" in
        deadline_value) extra=() ;;
        discovery_document)
            mapfile -t extra < <(module_objs upstream \
                ngx_http_upstream_discovery_source.c) ;;
        probe_answer)
            mapfile -t extra < <(module_objs upstream \
                ngx_http_upstream_discovery_check.c) ;;
        breaker_admin)
            mapfile -t extra < <(module_objs breaker \
                ngx_http_breaker_admin.c) ;;
        *) extra=() ;;
    esac

    say "fuzz: building $t"
    "$CC_FUZZ" $CFLAGS $SAN -fsanitize=fuzzer "${INCS[@]}" \
        "$ROOT/t/fuzz/$t.c" "${extra[@]}" "${core_objs[@]}" \
        "$OUT/libnginx.a" "${LIBS[@]}" -o "$OUT/$t"

    mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
    cp -n "$ROOT/t/fuzz/corpus/$t"/* "$OUT/corpus/$t/" 2>/dev/null || true

    say "fuzz: running $t for ${SECONDS_EACH}s"
    jobs=()
    [ "$JOBS" -gt 1 ] && jobs=(-jobs="$JOBS" -workers="$JOBS")

    if ! "$OUT/$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
            -max_len=65536 "${jobs[@]}" \
            -artifact_prefix="$OUT/artifacts/$t/" \
            -print_final_stats=1 "$OUT/corpus/$t" \
            > "$OUT/$t.log" 2>&1; then
        failed+=("$t")
        tail -40 "$OUT/$t.log" >&2
    fi

    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|cov: ' \
        "$OUT/$t.log" | tail -3 >&2 || true
done

if [ ${#failed[@]} -gt 0 ]; then
    die "failed: ${failed[*]} (inputs in $OUT/artifacts)"
fi

say "fuzz: no crash, no sanitizer report, every invariant held"
