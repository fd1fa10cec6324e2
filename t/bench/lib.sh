# t/bench/lib.sh: what bench.sh and accuracy.sh share, sourced by both.
#
# The caller sets BUILD and SCRIPT (its name, for die), and the globals
# these use:
# RUN (the run directory), PIDS (every process started), USED_PORTS,
# FAILED and KEEP; render_table reads LEFT_COLUMNS (how many first
# columns are left-aligned, 2 unless set).

# the modules, in load order: the core module first
MODULES=(
    ngx_http_resilience_module
    ngx_http_breaker_module
    ngx_http_ratelimit_module
    ngx_http_deadline_module
    ngx_http_upstream_discovery_module
)

# the nginx to run: NGINX_BINARY, the one built from NGINX_SRC, or Debian's
if [ -n "${NGINX_BINARY:-}" ]; then
    NGINX="$NGINX_BINARY"
elif [ -n "${NGINX_SRC:-}" ]; then
    NGINX="$BUILD/objs/nginx"
else
    NGINX=/usr/sbin/nginx
fi


say() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "${SCRIPT:-bench}" "$*" >&2; exit 1; }


# stop_pid PID [SIGNAL [TIMEOUT]]: signal PID (and, if it dies not in
# time, kill it and its children), then reap it
stop_pid() {
    local pid="$1" sig="${2:-QUIT}" timeout="${3:-10}" children i

    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }

    # the children of an nginx master are its workers: remember them, in
    # case the master must be killed and leaves them behind
    children="$(pgrep -P "$pid" 2>/dev/null || true)"

    kill -s "$sig" "$pid" 2>/dev/null || true

    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done

    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid did not exit on SIG$sig in ${timeout}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi

    wait "$pid" 2>/dev/null || true

    for i in $children; do
        kill -KILL "$i" 2>/dev/null || true
    done
}


cleanup() {
    local pid

    trap - EXIT INT TERM

    for pid in "${PIDS[@]}"; do
        stop_pid "$pid" TERM 5
    done

    if [ -n "$RUN" ] && [ -d "$RUN" ]; then
        if [ "$FAILED" = 1 ] || [ "$KEEP" = 1 ]; then
            say "run directory kept: $RUN"
        else
            rm -rf "$RUN"
        fi
    fi
}


free_port() {
    local port

    # below the ephemeral range (32768-60999 on Linux), where a client
    # socket of another instance can hold a port that connect() finds free
    for port in $(shuf -i 20000-32000 -n 100); do
        case "$USED_PORTS" in *" $port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS="$USED_PORTS$port "
            PORT="$port"
            return 0
        fi
    done

    die "no free port found"
}


redis_start() {
    local dir="$RUN/redis" pid i

    free_port
    REDIS_PORT="$PORT"
    mkdir -p "$dir"

    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
        --appendonly no --daemonize no --dir "$dir" \
        --logfile "$dir/redis.log" >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")

    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null \
            || { tail "$dir/redis.log" >&2; die "redis-server exited"; }
        if redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
            return 0
        fi
        sleep 0.1
    done

    die "redis-server does not answer on port $REDIS_PORT"
}


# render_table text|md: render the tab-separated rows on stdin; the first
# two columns are text (left-aligned), the others numbers (right-aligned)
render_table() {
    awk -F'\t' -v format="$1" -v left="${LEFT_COLUMNS:-2}" '
        {
            rows = NR
            cols = NF > cols ? NF : cols
            for (i = 1; i <= NF; i++) {
                cell[NR, i] = $i
                if (length($i) > width[i]) width[i] = length($i)
            }
        }
        END {
            for (r = 1; r <= rows; r++) {
                line = ""
                for (i = 1; i <= cols; i++) {
                    if (format == "md") {
                        line = line "| " cell[r, i] " "
                    } else {
                        f = i <= left ? "%-" width[i] "s" : "%" width[i] "s"
                        line = line (i > 1 ? "   " : "") sprintf(f, cell[r, i])
                    }
                }
                print format == "md" ? line "|" : line

                if (r == 1 && format == "md") {
                    line = ""
                    for (i = 1; i <= cols; i++)
                        line = line (i <= left ? "|---" : "|--:")
                    print line "|"
                }
            }
        }'
}
