#!/usr/bin/env bash
#
# t/bench/bench.sh: the benchmark runner (./build.sh bench runs it after
# building the modules).
#
# Two figures for every variant (a variant = an nginx "location /" body,
# plus optional http-level lines, see "Variants" below):
#
#   1. wrk throughput and p99 latency: one nginx per variant (master on,
#      worker_processes 1, so that nginx and wrk share the 2 cores), rounds
#      interleaved (round 1: every variant, round 2: every variant, ...),
#      the median over the rounds reported.
#   2. callgrind instructions per request, the repeatable figure: nginx as
#      one process under valgrind --tool=callgrind, N keepalive requests
#      with ab, minus an idle run of the same configuration serving none.
#
# Both tables are printed and written to build/bench/results.md.
#
# Environment:
#
#   BENCH_ROUNDS=3               wrk rounds per variant (median reported)
#   BENCH_DURATION=5             seconds per wrk run
#   BENCH_WARMUP=1               seconds of unrecorded wrk warm-up per variant
#                                before round 1 (0: none)
#   BENCH_CALLGRIND=1            0 skips the callgrind part
#   BENCH_CALLGRIND_REQUESTS=5000  requests per callgrind run
#   BENCH_VARIANTS=<regex>       only the variants whose name matches
#   BENCH_START_TIMEOUT=60       seconds to wait for nginx under valgrind
#   BENCH_KEEP=1                 keep the run directory (configs, logs,
#                                callgrind.out files) even on success
#   NGINX_BINARY=<path>          the nginx to run (default /usr/sbin/nginx,
#                                or build/objs/nginx when NGINX_SRC is set)
#
# Variants: one file per variant, t/bench/variants/NN-name.conf, run in
# file name order; the variant is called "name".  In the file:
#
#   # http: <line>          an http{}-level line (repeat for several lines:
#                           an upstream{} block takes one "# http:" a line)
#   # modules: none | all   load no module (pure nginx baselines), or every
#                           built module (the default)
#   # requires: <module>..  skip the variant unless build/modules/<module>.so
#                           was built (e.g. ngx_http_breaker_module)
#   # anything else         a comment
#   other lines             the body of "location / { ... }"
#
# Placeholders, in both http lines and the body: @UPSTREAM_PORT@ (the
# upstream nginx answering "ok\n"), @REDIS_PORT@ (the Redis started for
# the run), @PREFIX@ (this nginx instance's prefix directory).
#
# The variant "proxy_keepalive" is the baseline of the "vs proxy" columns,
# "return200" that of the "vs return200" column.

set -euo pipefail

# "&" in a ${var//pattern/replacement} replacement must stay a plain "&"
shopt -u patsub_replacement 2>/dev/null || true


ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/t/bench"
BUILD="$ROOT/build"
OUT_DIR="$BUILD/bench"
RESULTS="$OUT_DIR/results.md"

ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-5}"
WARMUP="${BENCH_WARMUP:-1}"
CALLGRIND="${BENCH_CALLGRIND:-1}"
CG_REQUESTS="${BENCH_CALLGRIND_REQUESTS:-5000}"
ONLY="${BENCH_VARIANTS:-}"
START_TIMEOUT="${BENCH_START_TIMEOUT:-60}"
KEEP="${BENCH_KEEP:-0}"

WRK_THREADS=1
WRK_CONNECTIONS=32

BASELINE=proxy_keepalive
BASELINE_RETURN=return200


SCRIPT=bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


# ---------------------------------------------------------------------------
# processes: every pid started is recorded, the EXIT trap ends them all

RUN=""              # this run's directory, build/bench/run.XXXXXX
MODULE_DIR=""       # $RUN/modules: a copy of build/modules/*.so
PIDS=()             # every nginx, valgrind and redis-server started
USED_PORTS=" "      # the ports handed out in this run
FAILED=1            # cleared once everything went fine


# free_port: set PORT to a free loopback port (not in a $(...) subshell:
# USED_PORTS must remember it)
PORT=""


# listening PORT: is a socket listening on 127.0.0.1:PORT?  (reads
# /proc/net/tcp: no connection is made)
listening() {
    local hex

    hex="$(printf '%04X' "$1")"
    awk -v p="$hex" '
        $4 == "0A" { split($2, a, ":"); if (a[2] == p) f = 1 }
        END { exit !f }' /proc/net/tcp
}


# ---------------------------------------------------------------------------
# variants

VARIANTS=()                 # names, in run order
declare -A VARIANT_FILE     # name -> file


load_variants() {
    local file name req skip

    for file in "$BENCH"/variants/*.conf; do
        [ -f "$file" ] || continue
        name="$(basename "$file" .conf)"
        name="${name#"${name%%[!0-9]*}"}"
        name="${name#-}"

        [ -n "$name" ] || die "$file: no variant name in the file name"
        [ -z "${VARIANT_FILE[$name]:-}" ] \
            || die "variant $name defined twice: $file, ${VARIANT_FILE[$name]}"

        if [ -n "$ONLY" ] && ! [[ "$name" =~ $ONLY ]]; then
            continue
        fi

        skip=""
        for req in $(variant_meta "$file" requires); do
            [ -f "$MODULE_DIR/$req.so" ] || skip="$req"
        done
        if [ -n "$skip" ]; then
            say "variant $name skipped: $skip.so is not built"
            continue
        fi

        case "$(variant_meta "$file" modules)" in
            ""|all|none) ;;
            *) die "$file: '# modules:' takes none or all" ;;
        esac

        VARIANTS+=("$name")
        VARIANT_FILE[$name]="$file"
    done

    [ ${#VARIANTS[@]} -gt 0 ] || die "no variant to run (BENCH_VARIANTS=$ONLY)"
}


# variant_meta FILE KEY: the values of the "# KEY:" lines, space-joined
variant_meta() {
    sed -n "s/^# *$2: *//p" "$1" | tr '\n' ' ' | sed 's/ *$//'
}


# variant_http FILE: the "# http:" lines, indented for http{}
variant_http() {
    sed -n 's/^# *http: \{0,1\}/    /p' "$1"
}


# variant_body FILE: the location body (the non-comment lines), indented
variant_body() {
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$1" | sed 's/^/            /'
}


# load_module_lines NAME: the load_module lines the variant wants
load_module_lines() {
    local m

    [ "$(variant_meta "${VARIANT_FILE[$1]}" modules)" = none ] && return 0

    for m in "${MODULES[@]}"; do
        if [ -f "$MODULE_DIR/$m.so" ]; then
            echo "load_module $MODULE_DIR/$m.so;"
        fi
    done
}


# module_names NAME: the loaded modules, short, for the tables
module_names() {
    local m list=""

    [ "$(variant_meta "${VARIANT_FILE[$1]}" modules)" = none ] \
        && { echo none; return 0; }

    for m in "${MODULES[@]}"; do
        if [ -f "$MODULE_DIR/$m.so" ]; then
            m="${m#ngx_http_}"
            list="$list,${m%_module}"
        fi
    done

    echo "${list#,}"
}


# ---------------------------------------------------------------------------
# nginx instances

NGINX_PID=""    # set by nginx_start


# render TEMPLATE OUTPUT KEY=VALUE...: replace every @KEY@ in TEMPLATE
render() {
    local template="$1" output="$2" text kv

    shift 2
    text="$(cat "$template")"

    for kv in "$@"; do
        text="${text//@${kv%%=*}@/${kv#*=}}"
    done

    printf '%s\n' "$text" > "$output"
}


# nginx_config NAME MODE PREFIX PORT: write PREFIX/conf/nginx.conf for
# the variant; MODE is wrk (master on) or callgrind (master off)
nginx_config() {
    local name="$1" mode="$2" prefix="$3" port="$4" file master http body

    file="${VARIANT_FILE[$name]}"
    master=on
    [ "$mode" = callgrind ] && master=off

    http="$(variant_http "$file")"
    body="$(variant_body "$file")"

    for kv in "UPSTREAM_PORT=$UPSTREAM_PORT" "REDIS_PORT=$REDIS_PORT" \
              "PREFIX=$prefix"; do
        http="${http//@${kv%%=*}@/${kv#*=}}"
        body="${body//@${kv%%=*}@/${kv#*=}}"
    done

    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"

    render "$BENCH/nginx.conf.in" "$prefix/conf/nginx.conf" \
        "LOAD_MODULES=$(load_module_lines "$name")" \
        "MASTER=$master" "DAEMON=off" "PORT=$port" \
        "HTTP=$http" "LOCATION=$body"

    "$NGINX" -t -q -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        >"$prefix/logs/nginx-t.log" 2>&1 \
        || { cat "$prefix/logs/nginx-t.log" >&2;
             die "variant $name: nginx -t failed ($prefix/conf/nginx.conf)"; }
}


# nginx_start PREFIX [WRAPPER...]: start nginx (in the foreground, in
# the background of this shell) with PREFIX/conf/nginx.conf; sets
# NGINX_PID (the master, or the single process / valgrind)
nginx_start() {
    local prefix="$1"

    shift
    "$@" "$NGINX" -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        >"$prefix/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}


# died PID PREFIX WHAT: fail with the end of PREFIX's error log
died() {
    tail -20 "$2/logs/error.log" "$2/logs/stdout.log" >&2 2>/dev/null || true
    die "$3 exited (pid $1, prefix $2)"
}


# wait_http PID PREFIX PORT WHAT: wait until http://127.0.0.1:PORT/
# answers 200 "ok" (wrk instances: it checks the variant works, too)
wait_http() {
    local pid="$1" prefix="$2" port="$3" what="$4" i body=""

    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || died "$pid" "$prefix" "$what"
        body="$(curl -s -m 2 -f "http://127.0.0.1:$port/" 2>/dev/null || true)"
        [ "$body" = ok ] && return 0
        sleep 0.1
    done

    tail -20 "$prefix/logs/error.log" >&2 2>/dev/null || true
    die "$what does not answer 200 \"ok\" on port $port (got '$body')"
}


# wait_event_loop PID PREFIX PORT WHAT: wait until nginx listens on PORT
# and sleeps in epoll_wait(), i.e. has reached its event loop, without
# connecting to it (the idle callgrind run serves nothing at all).  Where
# /proc/PID/wchan says nothing, fall back to connecting (no request sent).
WCHAN_OK=""

wait_event_loop() {
    local pid="$1" prefix="$2" port="$3" what="$4" i wchan

    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || died "$pid" "$prefix" "$what"

        if listening "$port"; then
            if [ "$WCHAN_OK" = 1 ]; then
                wchan="$(cat "/proc/$pid/wchan" 2>/dev/null || true)"
                case "$wchan" in
                    # ep_poll, do_epoll_wait: the kernel's names vary
                    *ep_poll*|*epoll_wait*) return 0 ;;
                esac
            elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                sleep 1
                return 0
            fi
        fi
        sleep 0.1
    done

    tail -20 "$prefix/logs/error.log" >&2 2>/dev/null || true
    die "$what did not reach its event loop in ${START_TIMEOUT}s"
}


check_wchan() {
    local pid

    sleep 2 &
    pid=$!
    sleep 0.2
    # a sleeping process shows hrtimer_nanosleep, do_nanosleep...; a
    # kernel hiding its symbols shows 0 or nothing
    case "$(cat "/proc/$pid/wchan" 2>/dev/null || true)" in
        *sleep*) WCHAN_OK=1 ;;
        *)       WCHAN_OK=0 ;;
    esac
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}


# ---------------------------------------------------------------------------
# the fixtures: Redis and the upstream nginx

REDIS_PORT=""
UPSTREAM_PORT=""


upstream_start() {
    local prefix="$RUN/upstream"

    free_port
    UPSTREAM_PORT="$PORT"
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"
    render "$BENCH/upstream.conf.in" "$prefix/conf/nginx.conf" \
        "PORT=$UPSTREAM_PORT"

    nginx_start "$prefix"
    wait_http "$NGINX_PID" "$prefix" "$UPSTREAM_PORT" "the upstream nginx"
}


# ---------------------------------------------------------------------------
# wrk

declare -A WRK_PID WRK_PORT WRK_PREFIX
declare -A RPS P99      # name -> the values of every round, space separated


# run_wrk URL OUTPUT SECONDS: run wrk, fail on errors or non-200s
run_wrk() {
    local url="$1" out="$2" secs="$3"

    wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${secs}s" --latency "$url" \
        >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed ($url)"; }

    if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
        cat "$out" >&2
        die "wrk saw errors ($url, $out)"
    fi

    grep -q '^Requests/sec:' "$out" || { cat "$out" >&2; die "no wrk result"; }
}


# wrk_rps FILE: requests per second
wrk_rps() {
    awk '/^Requests\/sec:/ { print $2 }' "$1"
}


# wrk_p99 FILE: the 99% latency, in ms
wrk_p99() {
    awk '$1 == "99%" {
            v = $2
            if (v ~ /us$/)      { sub(/us$/, "", v); v /= 1000 }
            else if (v ~ /ms$/) { sub(/ms$/, "", v) }
            else if (v ~ /s$/)  { sub(/s$/, "", v); v *= 1000 }
            printf "%.3f\n", v
         }' "$1"
}


wrk_phase() {
    local name round prefix port out rps p99

    for name in "${VARIANTS[@]}"; do
        prefix="$RUN/$name/wrk"
        free_port
        port="$PORT"
        nginx_config "$name" wrk "$prefix" "$port"
        nginx_start "$prefix"
        wait_http "$NGINX_PID" "$prefix" "$port" "nginx for variant $name"
        WRK_PID[$name]="$NGINX_PID"
        WRK_PORT[$name]="$port"
        WRK_PREFIX[$name]="$prefix"
        RPS[$name]=""
        P99[$name]=""

        if [ "$WARMUP" != 0 ]; then
            run_wrk "http://127.0.0.1:$port/" "$prefix/wrk-warmup.txt" "$WARMUP"
        fi
    done

    for ((round = 1; round <= ROUNDS; round++)); do
        for name in "${VARIANTS[@]}"; do
            kill -0 "${WRK_PID[$name]}" 2>/dev/null \
                || died "${WRK_PID[$name]}" "${WRK_PREFIX[$name]}" \
                        "nginx for variant $name"

            out="${WRK_PREFIX[$name]}/wrk-$round.txt"
            run_wrk "http://127.0.0.1:${WRK_PORT[$name]}/" "$out" "$DURATION"

            rps="$(wrk_rps "$out")"
            p99="$(wrk_p99 "$out")"
            RPS[$name]="${RPS[$name]} $rps"
            P99[$name]="${P99[$name]} $p99"

            say "$(printf 'wrk round %d/%d  %-24s %10.0f req/s  p99 %7.3f ms' \
                   "$round" "$ROUNDS" "$name" "$rps" "$p99")"
        done
    done

    for name in "${VARIANTS[@]}"; do
        stop_pid "${WRK_PID[$name]}" QUIT 10
    done
}


# median "VALUE...": the median of space-separated values (the mean of
# the middle two for an even count)
median() {
    # shellcheck disable=SC2086
    printf '%s\n' $1 | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) print v[(NR + 1) / 2]
            else        print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}


# ---------------------------------------------------------------------------
# callgrind

declare -A CG_PER_REQUEST


# callgrind_run NAME REQUESTS: run the variant under callgrind, serve
# REQUESTS keepalive requests with ab (0: none), stop it; sets CG_RESULT
# to the total instruction count (no $(...) subshell: PIDS must know
# valgrind for the EXIT trap)
CG_RESULT=""

callgrind_run() {
    local name="$1" requests="$2" prefix port pid out total

    prefix="$RUN/$name/callgrind-$requests"
    free_port
    port="$PORT"
    out="$prefix/callgrind.out"

    nginx_config "$name" callgrind "$prefix" "$port"
    nginx_start "$prefix" valgrind --tool=callgrind \
        --callgrind-out-file="$out" --log-file="$prefix/logs/valgrind.log"
    pid="$NGINX_PID"

    wait_event_loop "$pid" "$prefix" "$port" "callgrind nginx for variant $name"

    if [ "$requests" -gt 0 ]; then
        ab -k -c1 -n "$requests" "http://127.0.0.1:$port/" \
            >"$prefix/ab.txt" 2>&1 \
            || { cat "$prefix/ab.txt" >&2; die "ab failed (variant $name)"; }

        if ! grep -q "^Complete requests: *$requests\$" "$prefix/ab.txt" \
                || ! grep -q '^Failed requests: *0$' "$prefix/ab.txt" \
                || grep -q '^Non-2xx' "$prefix/ab.txt"; then
            cat "$prefix/ab.txt" >&2
            die "ab saw errors (variant $name)"
        fi
    fi

    # SIGQUIT: nginx exits, valgrind writes the profile; allow it time
    stop_pid "$pid" QUIT 60

    [ -s "$out" ] || { tail "$prefix/logs/valgrind.log" >&2;
                       die "no callgrind output for variant $name"; }

    total="$(awk '/^(summary|totals):/ { print $2; exit }' "$out")"
    [ -n "$total" ] || die "no summary/totals line in $out"

    CG_RESULT="$total"
}


callgrind_phase() {
    local name total idle

    for name in "${VARIANTS[@]}"; do
        say "callgrind: $name (idle run, then $CG_REQUESTS requests)"
        callgrind_run "$name" 0
        idle="$CG_RESULT"
        callgrind_run "$name" "$CG_REQUESTS"
        total="$CG_RESULT"
        CG_PER_REQUEST[$name]="$(awk -v t="$total" -v i="$idle" \
                                     -v n="$CG_REQUESTS" \
                                     'BEGIN { printf "%.0f", (t - i) / n }')"
        say "$(printf 'callgrind  %-24s %10s instructions/request' \
               "$name" "${CG_PER_REQUEST[$name]}")"
    done
}


# ---------------------------------------------------------------------------
# report: each table is built as tab-separated rows (the first row the
# header), then rendered as aligned text or as markdown

# ratio A B: A / B, as "0.987", or "-" without B
ratio() {
    if [ -z "$2" ] || [ "$2" = nan ]; then
        echo "-"
    else
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'
    fi
}


# row CELL...: one tab-separated row
row() {
    local IFS=$'\t'

    echo "$*"
}


wrk_rows() {
    local name base_rps="" base_ret="" rps p99

    if [ -n "${RPS[$BASELINE]:-}" ]; then
        base_rps="$(median "${RPS[$BASELINE]}")"
    fi
    if [ -n "${RPS[$BASELINE_RETURN]:-}" ]; then
        base_ret="$(median "${RPS[$BASELINE_RETURN]}")"
    fi

    row variant modules "req/s" "p99 ms" "vs $BASELINE" "vs $BASELINE_RETURN"

    for name in "${VARIANTS[@]}"; do
        rps="$(median "${RPS[$name]}")"
        p99="$(median "${P99[$name]}")"
        row "$name" "$(module_names "$name")" \
            "$(printf '%.0f' "$rps")" "$(printf '%.3f' "$p99")" \
            "$(ratio "$rps" "$base_rps")" "$(ratio "$rps" "$base_ret")"
    done
}


callgrind_rows() {
    local name base n delta pct

    base="${CG_PER_REQUEST[$BASELINE]:-}"

    row variant modules "instructions/request" "delta vs $BASELINE" "delta %"

    for name in "${VARIANTS[@]}"; do
        n="${CG_PER_REQUEST[$name]}"
        delta="-"
        pct="-"
        if [ -n "$base" ]; then
            delta="$(awk -v a="$n" -v b="$base" 'BEGIN { printf "%+d", a - b }')"
            pct="$(awk -v a="$n" -v b="$base" \
                       'BEGIN { printf "%+.2f%%", (a - b) * 100 / b }')"
        fi
        row "$name" "$(module_names "$name")" "$n" "$delta" "$pct"
    done
}


# the setup, for the report's header
SETUP_MACHINE=""
SETUP_NGINX=""
SETUP_TOOLS=""
SETUP_SOURCE=""
WRK_COMMAND=""
CG_COMMAND=""


describe_setup() {
    local cpu rev

    cpu="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ -n "$(git -C "$ROOT" status --porcelain -- modules config 2>/dev/null)" ]
    then
        rev="$rev+uncommitted changes"
    fi

    SETUP_MACHINE="$(nproc) cores ($cpu), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
    SETUP_NGINX="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') ($NGINX)"
    SETUP_TOOLS="$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(valgrind --version), ab $(ab -V 2>&1 | awk '/^This is ApacheBench/ { print $5; exit }' | tr -d ,)"
    SETUP_SOURCE="$rev, $(date -u '+%Y-%m-%d %H:%M UTC')"

    WRK_COMMAND="wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${DURATION}s --latency http://127.0.0.1:PORT/"
    CG_COMMAND="valgrind --tool=callgrind nginx; ab -k -c1 -n $CG_REQUESTS http://127.0.0.1:PORT/"
}


# report_text: the tables, for the terminal
report_text() {
    cat <<EOT

Machine:    $SETUP_MACHINE
nginx:      $SETUP_NGINX
tools:      $SETUP_TOOLS
source:     $SETUP_SOURCE

Throughput: $WRK_COMMAND
            median of $ROUNDS interleaved round(s) of ${DURATION}s; each variant its own
            nginx, master_process on, worker_processes 1 (nginx and wrk share
            the $(nproc) cores); the upstream is a separate nginx on the same machine

EOT
    wrk_rows | render_table text

    [ "$CALLGRIND" != 0 ] || return 0

    cat <<EOT

Instructions per request: $CG_COMMAND
            nginx as one process (master_process off); (total - idle run) / $CG_REQUESTS,
            the idle run starting and stopping the same configuration, serving nothing

EOT
    callgrind_rows | render_table text
}


# report_md: the same, in markdown, for the README
report_md() {
    cat <<EOT
## Benchmarks

- Machine: $SETUP_MACHINE
- nginx: $SETUP_NGINX
- Tools: $SETUP_TOOLS
- Source: $SETUP_SOURCE

### Throughput (wrk)

\`$WRK_COMMAND\`, median of $ROUNDS interleaved round(s) of ${DURATION}s.
Each variant runs its own nginx, \`master_process on; worker_processes 1;\`,
so that nginx and wrk share the $(nproc) cores; the upstream is a separate
nginx on the same machine. "vs $BASELINE" is req/s relative to the
\`$BASELINE\` variant.

EOT
    wrk_rows | render_table md

    [ "$CALLGRIND" != 0 ] || return 0

    cat <<EOT

### Instructions per request (callgrind)

nginx as one process (\`master_process off\`) under
\`valgrind --tool=callgrind\`, serving \`ab -k -c1 -n $CG_REQUESTS\`:
(total instructions - those of an idle run of the same configuration,
started and stopped without serving anything) / $CG_REQUESTS.

EOT
    callgrind_rows | render_table md
}


report() {
    report_md > "$RUN/results.md"
    cp "$RUN/results.md" "$RESULTS"
    report_text
    echo
    say "results written to $RESULTS"
}


# ---------------------------------------------------------------------------

check_setup() {
    local tool

    [ -x "$NGINX" ] || die "no nginx binary at $NGINX (NGINX_BINARY?)"
    [ -f "$BUILD/modules/ngx_http_resilience_module.so" ] \
        || die "build/modules/ngx_http_resilience_module.so missing: run ./build.sh build"

    for tool in wrk ab curl redis-server redis-cli; do
        command -v "$tool" >/dev/null || die "$tool missing: run ./build.sh deps"
    done
    if [ "$CALLGRIND" != 0 ]; then
        command -v valgrind >/dev/null || die "valgrind missing: run ./build.sh deps"
    fi

    for var in ROUNDS DURATION WARMUP CG_REQUESTS START_TIMEOUT; do
        [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var=${!var}: not a number"
    done
    if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$CG_REQUESTS" -lt 1 ]
    then
        die "BENCH_ROUNDS, BENCH_DURATION, BENCH_CALLGRIND_REQUESTS must be >= 1"
    fi
}


# snapshot_modules: copy build/modules/*.so into the run directory and
# load them from there, so that a rebuild during the run changes nothing
snapshot_modules() {
    MODULE_DIR="$RUN/modules"
    mkdir -p "$MODULE_DIR"
    cp "$BUILD"/modules/*.so "$MODULE_DIR/"
}


main() {
    check_setup

    mkdir -p "$OUT_DIR"
    RUN="$(mktemp -d "$OUT_DIR/run.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    snapshot_modules
    load_variants

    describe_setup
    check_wchan

    say "variants: ${VARIANTS[*]}"
    say "run directory: $RUN"

    redis_start
    upstream_start
    say "Redis on port $REDIS_PORT, upstream nginx on port $UPSTREAM_PORT"

    wrk_phase

    if [ "$CALLGRIND" != 0 ]; then
        callgrind_phase
    fi

    report
    FAILED=0
}


main "$@"
