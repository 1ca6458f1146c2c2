#!/usr/bin/env bash
# Spool-to-queue benchmark: N files of SIZE bytes placed in pickup/ while the
# daemon is down, then the daemon is started and timed until pickup/ is
# empty (every file unlinked = every message committed with fdatasync).
# Prints each run and the median. Loopback/local only: nothing is sent.
#
# usage: tools/bench_spool.sh [N=50000] [SIZE=2048]
# env:   RUNS (default 5), RINGMAIL_IO (auto|uring|epoll), SHARDS (default 0 =
#        one per core), BIN (default target/release/ringmail), BENCH_DIR
#        (default /var/tmp: a real disk, not tmpfs)
set -euo pipefail
N=${1:-50000}
SIZE=${2:-2048}
RUNS=${RUNS:-5}
SHARDS=${SHARDS:-0}
BIN=${BIN:-target/release/ringmail}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

rates=()
for run in $(seq 1 "$RUNS"); do
  dir=$(mktemp -d "$BENCH_DIR/ringmail-bench.XXXXXX")
  mkdir -p "$dir/spool/maildrop" "$dir/spool/pickup" "$dir/spool/queue" "$dir/spool/corrupt"
  cat > "$dir/ringmail.toml" <<TOML
spool_dir = "$dir/spool"
myhostname = "bench.localhost"
shards = $SHARDS
pickup_settle_ms = 0
TOML
  python3 "$here/gen_spool_files.py" "$dir/spool/pickup" "$N" "$SIZE"
  sync
  start=$(date +%s.%N)
  "$BIN" serve --config "$dir/ringmail.toml" 2> "$dir/log" &
  pid=$!
  while [ "$(ls -f "$dir/spool/pickup" | head -3 | wc -l)" -gt 2 ]; do
    kill -0 "$pid" 2>/dev/null || { echo "daemon died:"; tail "$dir/log"; exit 1; }
    sleep 0.02
  done
  end=$(date +%s.%N)
  cpu=$(awk '{print ($14+$15)/100}' "/proc/$pid/stat")
  kill -TERM "$pid"; wait "$pid"
  queued=$(grep -c "(queue active)" "$dir/log" || true)
  backend=$(grep -o "io backend [a-z_]*" "$dir/log" | head -1)
  rate=$(python3 -c "print(round($N/($end-$start)))")
  echo "run $run: $N x $SIZE B in $(python3 -c "print(round($end-$start,3))") s = $rate msg/s, daemon CPU ${cpu}s, queued=$queued ($backend)"
  [ "$queued" -eq "$N" ] || { echo "LOST OR DUPLICATED: queued $queued of $N" >&2; exit 1; }
  rates+=("$rate")
  rm -rf "$dir"
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median: $median msg/s over $RUNS runs"
