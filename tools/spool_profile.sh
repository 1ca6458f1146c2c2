#!/usr/bin/env bash
# Where the CPU goes in a spool run: N staged files renamed into pickup/ of a
# running `ringmail serve` that relays to Postfix's smtp-sink on 127.0.0.1,
# timed until N `status=sent`, with the daemon's CPU per message split by
# thread group (shard, pickup main thread, unlink, io-wq / blocking pool,
# log; user and system time from /proc/PID/task/*/stat), the whole machine's
# busy time per message, and the input files still waiting to be unlinked
# when the clock stopped (work pushed past the end of the run, which a
# throughput figure alone would hide). For comparing builds: run it several
# times, alternating binaries; on a shared machine one run says little.
#
# usage: tools/spool_profile.sh [--messages N] [--no-sync] [--io uring|epoll]
#                               [--perf] [--bin PATH]
#   --messages N   files (50000)
#   --no-sync      do not sync the staged files (see compare_postfix.sh)
#   --io B         RINGMAIL_IO for the daemon (uring)
#   --perf         also `perf record -a -g` the run; the data is kept
#   --bin PATH     the ringmail binary (target/release/ringmail)
#
# Output: one line of per-thread figures (`shard.u=20` = 20 µs of user time
# per message in the shard threads), one of context switches per message
# by thread group and for the whole machine, then one summary line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
N=50000
SYNC=1
IO=uring
PERF=0
BIN=$root/target/release/ringmail

die() { echo "spool_profile: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) [[ "${2-}" =~ ^[1-9][0-9]*$ ]] || die "--messages needs a positive integer"; N=$2; shift 2 ;;
    --no-sync) SYNC=0; shift ;;
    --io) case "${2-}" in uring|epoll) IO=$2 ;; *) die "--io is uring or epoll" ;; esac; shift 2 ;;
    --perf) PERF=1; shift ;;
    --bin) BIN=${2-}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
[ -x "$BIN" ] || die "$BIN is not built (cargo build --release)"
[ -x /usr/sbin/smtp-sink ] || die "/usr/sbin/smtp-sink missing: install Debian's postfix package"
command -v python3 >/dev/null || die "python3 is needed"
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "--perf needs perf"

W=$(mktemp -d /var/tmp/spool-profile.XXXXXX)
SINK=; D=; PP=
cleanup() {
  [ -z "$PP" ] || { kill -INT "$PP" 2>/dev/null || true; wait "$PP" 2>/dev/null || true; }
  [ -z "$D" ] || { kill "$D" 2>/dev/null || true; wait "$D" 2>/dev/null || true; }
  [ -z "$SINK" ] || { kill "$SINK" 2>/dev/null || true; wait "$SINK" 2>/dev/null || true; }
  rm -rf "$W/spool" "$W/staging"
  if [ "$PERF" = 1 ]; then echo "spool_profile: perf data and logs in $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u postfix)
/usr/sbin/smtp-sink -c "${sink_user[@]}" "127.0.0.1:$PORT" 1000 > "$W/sink.out" 2>&1 &
SINK=$!
mkdir -p "$W/spool/maildrop" "$W/spool/pickup" "$W/spool/queue" "$W/spool/corrupt" "$W/staging"
cat > "$W/ringmail.toml" <<TOML
spool_dir = "$W/spool"
myhostname = "bench.localhost"
relayhost = "[127.0.0.1]:$PORT"
pickup_settle_ms = 0
pickup_interval_ms = 50
TOML
python3 "$here/gen_spool_files.py" "$W/staging" "$N" 2048
[ "$SYNC" = 0 ] || sync
RINGMAIL_IO=$IO "$BIN" serve --config "$W/ringmail.toml" 2> "$W/daemon.log" &
D=$!
for _ in $(seq 1 300); do grep -q "daemon started" "$W/daemon.log" && break; sleep 0.05; done
grep -q "daemon started" "$W/daemon.log" || die "the daemon did not start; see $W/daemon.log"
if [ "$PERF" = 1 ]; then
  perf record -a -g -o "$W/perf.data" 2>/dev/null &
  PP=$!
  sleep 0.5
fi
python3 - "$W" "$N" "$D" <<'PY'
import collections, os, re, sys, time
w, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src, dst, log = f"{w}/staging", f"{w}/spool/pickup", f"{w}/daemon.log"
tick = os.sysconf("SC_CLK_TCK")
names = sorted(os.listdir(src))

def threads():
    """user and system ticks, and context switches (voluntary and not),
    per thread group (name without its -N suffix)"""
    t, cs = collections.Counter(), collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{tid}/stat").read()
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except FileNotFoundError:
            continue
        name = re.sub(r"-\d+$", "", s[s.index("(") + 1:s.rindex(")")])
        f = s.rsplit(")", 1)[1].split()
        t[name + ".u"] += int(f[11])
        t[name + ".s"] += int(f[12])
        cs[name] += sum(int(v) for v in re.findall(r"ctxt_switches:\s+(\d+)", status))
    return t, cs

def machine_switches():
    for line in open("/proc/stat"):
        if line.startswith("ctxt "):
            return int(line.split()[1])
    return 0

def machine_busy():
    v = list(map(int, open("/proc/stat").readline().split()[1:9]))
    return (sum(v) - v[3] - v[4]) / tick

(th0, cs0), busy0, ctxt0, t0 = threads(), machine_busy(), machine_switches(), time.monotonic()
for x in names:
    os.rename(f"{src}/{x}", f"{dst}/{x}")
offset = sent = 0
while sent < n:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "X"
    if state in ("Z", "X"):
        sys.exit(f"the daemon exited after {sent} status=sent; see {log}")
    with open(log, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    cut = chunk.rfind(b"\n") + 1
    sent += chunk[:cut].count(b"status=sent")
    offset += cut
    time.sleep(0.02)
t1 = time.monotonic()
left = len(os.listdir(dst))
th, cs = threads()
th.subtract(th0)
cs.subtract(cs0)
busy = machine_busy() - busy0
ctxt = machine_switches() - ctxt0
print(" ".join(f"{k}={1e6 * v / tick / n:.0f}" for k, v in sorted(th.items()) if v))
print("context switches per message: " + " ".join(f"{k}={v / n:.2f}" for k, v in sorted(cs.items()) if v)
      + f"; whole machine {ctxt / n:.2f}")
daemon = sum(th.values()) / tick
print(f"{n / (t1 - t0):.0f} msg/s; daemon CPU {1e6 * daemon / n:.0f} µs/msg; machine busy "
      f"{1e6 * busy / n:.0f} µs/msg ({100 * busy / (os.cpu_count() * (t1 - t0)):.0f} % of "
      f"{os.cpu_count()} CPUs); input files left at the end: {left}")
PY
