#!/usr/bin/env bash
#
# t/bench/accuracy.sh: how close the admitted rate comes to the configured
# one, for one and for two nginx instances (./build.sh bench accuracy
# runs it after building the modules).
#
# Each scenario starts its own nginx instance(s) (and shares the run's
# Redis), a zone with one constant key ("all": every request counts
# against the same limit), and offers ACCURACY_LOAD times the configured
# rate in total for ACCURACY_DURATION seconds, split evenly over the
# instances, with wrk paced by t/bench/pace.lua (wrk has no rate option).
# Every request to the limited location is logged ("$msec $status");
# the 200s are the admitted requests, the 429s the rejected ones.
#
# Scenarios (ACCURACY_SCENARIOS, "mode:instances[:load]" each, the load
# ACCURACY_LOAD unless given, e.g. "redis:2:0.75" offers 0.75 x the rate):
#
#   limit_req:N   stock limit_req, per instance (the reference)
#   local:N       ratelimit sync=local: per instance, as limit_req
#   redis:N       ratelimit sync=redis: decided locally, synced with
#                 Redis every sync_interval (ACCURACY_SYNC_INTERVAL)
#   strict:N      ratelimit sync=strict: every request checked in Redis
#
# Columns: "offered" and "admitted" are requests per second over the
# whole run; "steady" is the admitted rate after the first second (the
# burst allowance is spent by then, so it is the rate the limiter holds);
# "vs rate" is steady / the configured rate.  With N independent
# limiters (limit_req:2, local:2) the expected figure is N x the rate;
# a fleet limit should hold 1.0 whatever N.  Below the rate (a load under
# 1), every request should pass: "200/429" shows the ones that did not.
#
# Environment:
#
#   ACCURACY_RATE=200            the configured rate, r/s
#   ACCURACY_BURST=10            burst= (nodelay)
#   ACCURACY_LOAD=2              offered load / configured rate, in total
#   ACCURACY_DURATION=10         seconds of load per scenario
#   ACCURACY_CONNECTIONS=4       wrk connections per instance
#   ACCURACY_WORKERS=1           worker_processes per instance
#   ACCURACY_SYNC_INTERVAL=100ms sync_interval= for sync=redis
#   ACCURACY_SCENARIOS="limit_req:1 limit_req:2 local:1 local:2 redis:1 redis:2 strict:2"
#                                (below the rate, every request should pass:
#                                "local:1:0.75 redis:1:0.75 redis:2:0.75
#                                strict:2:0.75")
#   ACCURACY_KEEP=1              keep the run directory (configs, logs)
#   NGINX_BINARY=<path>          the nginx to run (default /usr/sbin/nginx,
#                                or build/objs/nginx when NGINX_SRC is set)
#
# The table is printed and written to build/bench/accuracy.md.

set -euo pipefail


ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/t/bench"
BUILD="$ROOT/build"
OUT_DIR="$BUILD/bench"
RESULTS="$OUT_DIR/accuracy.md"

RATE="${ACCURACY_RATE:-200}"
BURST="${ACCURACY_BURST:-10}"
LOAD="${ACCURACY_LOAD:-2}"
DURATION="${ACCURACY_DURATION:-10}"
CONNECTIONS="${ACCURACY_CONNECTIONS:-4}"
WORKERS="${ACCURACY_WORKERS:-1}"
SYNC_INTERVAL="${ACCURACY_SYNC_INTERVAL:-100ms}"
SCENARIOS="${ACCURACY_SCENARIOS:-limit_req:1 limit_req:2 local:1 local:2 redis:1 redis:2 strict:2}"
KEEP="${ACCURACY_KEEP:-0}"


SCRIPT=accuracy.sh
LEFT_COLUMNS=1
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"


# ---------------------------------------------------------------------------
# processes: every pid started is recorded, the EXIT trap ends them all

RUN=""
PIDS=()
USED_PORTS=" "
FAILED=1


PORT=""


# ---------------------------------------------------------------------------
# Redis and the nginx instances

REDIS_PORT=""


# redis_line MODE SCENARIO: resilience_redis for the fleet modes; every
# instance of a scenario shares its prefix, no scenario another's
redis_line() {
    case "$1" in
        redis|strict)
            echo "resilience_redis 127.0.0.1:$REDIS_PORT prefix=nr:accuracy:$2:;" ;;
    esac
}


# zone_line MODE, limit_line MODE: the zone (http{}) and the limit
# (location) lines
zone_line() {
    case "$1" in
        limit_req)
            echo "limit_req_zone all zone=acc:1m rate=${RATE}r/s;"
            echo "    limit_req_status 429;" ;;
        local|redis|strict)
            printf 'ratelimit_zone acc key=all size=1m rate=%sr/s sync=%s' \
                "$RATE" "$1"
            [ "$1" = redis ] && printf ' sync_interval=%s' "$SYNC_INTERVAL"
            echo ";" ;;
    esac
}

limit_line() {
    case "$1" in
        limit_req) echo "limit_req zone=acc burst=$BURST nodelay;" ;;
        *)         echo "ratelimit acc burst=$BURST nodelay;" ;;
    esac
}


NGINX_PID=""

# nginx_start SCENARIO MODE INDEX PORT: one instance, in the foreground
# of a background job; every instance of a scenario shares one Redis prefix
nginx_start() {
    local scenario="$1" mode="$2" index="$3" port="$4" prefix m loads=""

    prefix="$RUN/$scenario/nginx$index"
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/html" "$prefix/tmp"
    echo ok > "$prefix/html/ok.txt"

    for m in "${MODULES[@]}"; do
        if [ -f "$BUILD/modules/$m.so" ]; then
            loads="${loads}load_module $BUILD/modules/$m.so;"$'\n'
        fi
    done

    cat > "$prefix/conf/nginx.conf" <<EOF
${loads}
master_process on;
daemon off;
worker_processes $WORKERS;
pid logs/nginx.pid;
error_log logs/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    keepalive_requests 1000000;
    keepalive_timeout 120s;

    log_format accuracy '\$msec \$status';

    $(redis_line "$mode" "$scenario")
    $(zone_line "$mode")

    server {
        listen 127.0.0.1:$port;

        location = /ok.txt {
            $(limit_line "$mode")
            root html;
            access_log logs/limited.log accuracy;
        }

        location = /status {
            resilience_status prometheus;
        }
    }
}
EOF

    "$NGINX" -t -q -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        >"$prefix/logs/nginx-t.log" 2>&1 \
        || { cat "$prefix/logs/nginx-t.log" >&2;
             die "$scenario: nginx -t failed ($prefix/conf/nginx.conf)"; }

    "$NGINX" -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        >"$prefix/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}


# metric PORT REGEX: the sum of the samples of /status matching REGEX
metric() {
    curl -s -m 2 "http://127.0.0.1:$1/status" 2>/dev/null \
        | awk -v re="$2" '$0 !~ /^#/ && $1 ~ re { s += $2 } END { print s + 0 }'
}


# wait_ready PID PORT MODE PREFIX: /status answers; with Redis, the
# command connections are up (an idle zone sends nothing but its census)
wait_ready() {
    local pid="$1" port="$2" mode="$3" prefix="$4" i

    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null \
            || { tail -20 "$prefix/logs/error.log" >&2; die "nginx exited"; }

        if curl -s -m 2 -f -o /dev/null "http://127.0.0.1:$port/status"; then
            case "$mode" in
                redis|strict)
                    [ "$(metric "$port" \
                         'redis_connected\\{.*connection="command"')" \
                         -ge "$WORKERS" ] && return 0 ;;
                *)  return 0 ;;
            esac
        fi
        sleep 0.1
    done

    tail -20 "$prefix/logs/error.log" >&2
    die "nginx on port $port not ready (mode $mode)"
}


# ---------------------------------------------------------------------------
# one scenario

ROWS=()

run_scenario() {
    local spec="$1" mode n scenario i port pids=() ports=() prefixes=()
    local load per_instance conns out logs rps counts fallbacks errors

    IFS=: read -r mode n load <<<"$spec"
    load="${load:-$LOAD}"
    [[ "$n" =~ ^[1-9][0-9]*$ ]] \
        || die "scenario '$spec': instances must be a number"
    [[ "$load" =~ ^[0-9]+(\.[0-9]+)?$ ]] \
        || die "scenario '$spec': the load must be a number"
    case "$mode" in
        limit_req|local|redis|strict) ;;
        *) die "scenario '$spec': unknown mode (limit_req, local, redis or strict)" ;;
    esac
    scenario="${mode}-$n-x$load"

    for ((i = 1; i <= n; i++)); do
        free_port
        port="$PORT"
        nginx_start "$scenario" "$mode" "$i" "$port"
        pids+=("$NGINX_PID")
        ports+=("$port")
        prefixes+=("$RUN/$scenario/nginx$i")
    done

    for ((i = 0; i < n; i++)); do
        wait_ready "${pids[$i]}" "${ports[$i]}" "$mode" "${prefixes[$i]}"
    done

    per_instance="$(awk -v r="$RATE" -v l="$load" -v n="$n" \
                        'BEGIN { printf "%.3f", r * l / n }')"
    conns="$CONNECTIONS"

    say "$scenario: $n instance(s), rate ${RATE}r/s burst=$BURST, offering $per_instance r/s to each for ${DURATION}s"

    # the instances are loaded at the same time, one wrk each
    local wrks=()
    for ((i = 0; i < n; i++)); do
        out="${prefixes[$i]}/wrk.txt"
        wrk -t1 -c"$conns" -d"${DURATION}s" -s "$BENCH/pace.lua" \
            "http://127.0.0.1:${ports[$i]}/ok.txt" -- "$per_instance" \
            >"$out" 2>&1 &
        wrks+=($!)
    done

    for ((i = 0; i < n; i++)); do
        wait "${wrks[$i]}" || { cat "${prefixes[$i]}/wrk.txt" >&2;
                                die "$scenario: wrk failed"; }
    done

    fallbacks=0
    errors=0
    if [ "$mode" != limit_req ]; then
        for ((i = 0; i < n; i++)); do
            fallbacks=$((fallbacks + $(metric "${ports[$i]}" \
                         'ratelimit_fallbacks_total\\{zone="acc"')))
            errors=$((errors + $(metric "${ports[$i]}" \
                         'ratelimit_redis_errors_total\\{zone="acc"')))
        done
    fi

    for ((i = 0; i < n; i++)); do
        stop_pid "${pids[$i]}" QUIT 10
    done

    logs=()
    for ((i = 0; i < n; i++)); do
        logs+=("${prefixes[$i]}/logs/limited.log")
    done

    # offered, admitted, steady (after the first second), 429s, others
    counts="$(sort -n "${logs[@]}" | awk -v d="$DURATION" '
        NR == 1 { t0 = $1 }
        { total++; last = $1 }
        $2 == 200 { ok++; if ($1 >= t0 + 1) steady++ }
        $2 == 429 { rejected++ }
        $2 != 200 && $2 != 429 { other++ }
        END {
            span = last - t0 - 1
            if (span <= 0) span = 1
            printf "%.1f %.1f %.1f %d %d %d %d\n", total / d, ok / d,
                   steady / span, ok, rejected + 0, other + 0, total
        }')"

    read -r offered admitted steady ok rejected other total <<<"$counts"

    [ "$other" = 0 ] || say "$scenario: $other response(s) neither 200 nor 429"

    rps="$(awk -v s="$steady" -v r="$RATE" 'BEGIN { printf "%.3f", s / r }')"

    say "$scenario: $total requests, $ok admitted, $rejected rejected; steady $steady r/s ($rps x the rate)"

    ROWS+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
              "$mode" "$n" "${load}x" "$RATE" "$offered" "$admitted" "$steady" "$rps" \
              "$ok/$rejected" "$fallbacks" "$errors")")
}


# ---------------------------------------------------------------------------
# report


table_rows() {
    local IFS=$'\t'

    echo "mode${IFS}instances${IFS}load${IFS}rate r/s${IFS}offered r/s${IFS}admitted r/s${IFS}steady r/s${IFS}steady / rate${IFS}200/429${IFS}fallbacks${IFS}redis errors"
    printf '%s\n' "${ROWS[@]}"
}


report() {
    local header

    header="Configured rate ${RATE}r/s, burst=$BURST nodelay, one key; offered ${LOAD}x the rate (unless the load column says otherwise) in total for ${DURATION}s, split over the instances (wrk -t1 -c$CONNECTIONS -s t/bench/pace.lua each), worker_processes $WORKERS; sync=redis with sync_interval=$SYNC_INTERVAL. \"admitted\": 200s / ${DURATION}s; \"steady\": 200s after the first second / the time left (the burst spent)."

    {
        echo "## Rate limit accuracy"
        echo
        echo "- Machine: $(nproc) cores, $(uname -sr)"
        echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
        echo "- Source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "$header"
        echo
        table_rows | render_table md
    } > "$RUN/accuracy.md"
    cp "$RUN/accuracy.md" "$RESULTS"

    echo
    echo "$header" | fold -s -w 76
    echo
    table_rows | render_table text
    echo
    say "results written to $RESULTS"
}


# ---------------------------------------------------------------------------

check_setup() {
    local tool var

    [ -x "$NGINX" ] || die "no nginx binary at $NGINX (NGINX_BINARY?)"
    [ -f "$BUILD/modules/ngx_http_ratelimit_module.so" ] \
        || die "build/modules/ngx_http_ratelimit_module.so missing: run ./build.sh build"

    for tool in wrk curl redis-server redis-cli; do
        command -v "$tool" >/dev/null || die "$tool missing: run ./build.sh deps"
    done

    for var in RATE BURST DURATION CONNECTIONS WORKERS; do
        [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var=${!var}: not a number"
    done
    [[ "$LOAD" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "LOAD=$LOAD: not a number"
    [ "$DURATION" -ge 2 ] || die "ACCURACY_DURATION must be >= 2"
}


main() {
    local spec

    check_setup

    mkdir -p "$OUT_DIR"
    RUN="$(mktemp -d "$OUT_DIR/accuracy.XXXXXX")"
    # mktemp's 0700 would keep workers running as another user from html/
    chmod 755 "$RUN"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    say "run directory: $RUN"
    redis_start
    say "Redis on port $REDIS_PORT"

    for spec in $SCENARIOS; do
        run_scenario "$spec"
    done

    report
    FAILED=0
}


main "$@"
