#!/usr/bin/env bash
# How much the input files' churn alone weighs on this machine: Postfix's
# smtp-source sends N messages straight into smtp-sink on 127.0.0.1 (the
# ceiling of tools/compare_postfix.sh), first alone, then while N staged
# files are renamed into a directory and read and unlinked there by
# tools/spool_churn.c (one reader, 16 unlink threads: ringmail pickup's
# pattern without cleanup, queue or SMTP), then alone again. Prints the
# ceiling and smtp-source's rate during the churn as a share of it.
#
# Not a bound on ringmail: smtp-source waits for every reply, so a busy
# machine slows it more than a pipelining client. It shows the size of the
# file system's share (on ext4 mounted `discard`, unlinking files whose
# blocks were written waits for a discard each).
#
# usage: tools/spool_churn.sh [--messages N] [--no-sync] [--size BYTES]
#   --messages N   messages and files (100000)
#   --no-sync      do not sync the staged files (see compare_postfix.sh)
#   --size BYTES   message and file size (2048)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
N=100000
SIZE=2048
SYNC=1
die() { echo "spool_churn: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) [[ "${2-}" =~ ^[1-9][0-9]*$ ]] || die "--messages needs a positive integer"; N=$2; shift 2 ;;
    --size) [[ "${2-}" =~ ^[1-9][0-9]*$ ]] || die "--size needs a positive integer"; SIZE=$2; shift 2 ;;
    --no-sync) SYNC=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || die "smtp-sink/smtp-source missing: install Debian's postfix package"
command -v gcc >/dev/null || die "gcc is needed"
command -v python3 >/dev/null || die "python3 is needed"

W=$(mktemp -d /var/tmp/spool-churn.XXXXXX)
SINK=
cleanup() {
  [ -z "$SINK" ] || { kill "$SINK" 2>/dev/null || true; wait "$SINK" 2>/dev/null || true; }
  rm -rf "$W"
}
trap cleanup EXIT
gcc -O2 -pthread -o "$W/spool_churn" "$here/spool_churn.c"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=(); [ "$(id -u)" = 0 ] && user=(-u postfix)
/usr/sbin/smtp-sink "${user[@]}" "127.0.0.1:$PORT" 1000 > "$W/sink.out" 2>&1 &
SINK=$!
sleep 0.5
kill -0 "$SINK" 2>/dev/null || { cat "$W/sink.out" >&2; die "smtp-sink did not start"; }

now() { date +%s.%N; }
source_run() {
  /usr/sbin/smtp-source -d -s 20 -l "$SIZE" -m "$N" -M bench.localhost \
    -f sender@example.com -t rcpt@example.net "127.0.0.1:$PORT" > /dev/null 2>&1 \
    || die "smtp-source failed"
}
rate() { python3 -c "print(round($N/($2-$1)))"; }

t0=$(now); source_run; t1=$(now); before=$(rate "$t0" "$t1")

mkdir -p "$W/staging" "$W/pickup"
python3 "$here/gen_spool_files.py" "$W/staging" "$N" "$SIZE"
[ "$SYNC" = 1 ] && sync
"$W/spool_churn" "$W/pickup" "$N" 16 & CHURN=$!
t0=$(now)
source_run & SRC=$!
python3 - "$W/staging" "$W/pickup" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    os.rename(os.path.join(src, name), os.path.join(dst, name))
PY
wait "$SRC"; t_src=$(now)
wait "$CHURN" || die "spool_churn failed"; t_all=$(now)
left=$(find "$W/pickup" -type f | wc -l)
during=$(rate "$t0" "$t_src")
all=$(rate "$t0" "$t_all")

t0=$(now); source_run; t1=$(now); after=$(rate "$t0" "$t1")
python3 - "$before" "$after" "$during" "$all" "$left" "$SYNC" <<'PY'
import sys
before, after, during, all_done, left, sync = map(int, sys.argv[1:])
ceiling = (before + after) / 2
print(f"ceiling (smtp-source -> smtp-sink alone): {before} before, {after} after, mean {ceiling:.0f} msg/s")
print(f"with the churn of {'synced' if sync else 'unsynced'} files: smtp-source {during} msg/s "
      f"= {100 * during / ceiling:.0f} % of the ceiling; everything done at {all_done} files+messages/s; "
      f"{left} files left")
PY
