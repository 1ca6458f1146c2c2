#!/usr/bin/env bash
# Provider scenario, ringmail against Postfix (issue 16, item 6): the same
# scenario (tools/scenarios/providers.toml by default) through both MTAs in
# one run on this machine, each timed until every message is delivered or
# bounced, each figure as a share of the scenario's own limit (what the
# providers' caps allow), and the ringmail/Postfix ratio.
#
#   1. ringmail  `ringmail bench --scenario FILE --json`: its own sinks and
#                loopback DNS server (see docs/BENCHMARKS.md)
#   2. Postfix   `ringmail sink --scenario FILE --port P` serves the same
#                providers (listeners on 127.0.0.x:P, same caps, same
#                throttle replies); `ringmail bench --scenario FILE --export`
#                writes the same messages and a Postfix configuration:
#                - transport_maps: every scenario domain -> a transport per
#                  provider, next hop [127.0.0.x]:P. Postfix resolves with
#                  the system resolver (no per-instance name server), which
#                  must not see the scenario's names, so the MX step is
#                  replaced by the map: what a bulk sender does anyway
#                  (transport_maps per provider), and the same grouping as
#                  ringmail's [sender] group_by_provider.
#                - per provider transport `prov_NAME` (master.cf: smtp) with
#                  prov_NAME_destination_concurrency_limit = the provider's
#                  max_connections: a bulk sender that knows each
#                  provider's connection cap. Postfix has no sub-second
#                  rate limit (destination_rate_delay is whole seconds), so
#                  the rate caps are left to the providers' throttle
#                  replies, which Postfix defers and retries.
#                - scenario.invalid (the bounces' sender domain) -> discard
#                A private instance as in tools/compare_postfix.sh (own
#                config, queue and data directories under the work dir,
#                nothing listens), the messages staged through
#                sendmail/postdrop while it is stopped (untimed), the clock
#                from renaming them back into maildrop/ until the maillog
#                has one final status (sent or bounced) per message.
#   3. one table (or --json: one JSON object)
#
# Everything is loopback. Must run as root (Postfix's master runs as
# root) unless --skip-postfix.
#
# usage: tools/compare_scenario.sh [options]
#   --scenario FILE     the scenario (tools/scenarios/providers.toml)
#   --skip-postfix      ringmail only
#   --stall-timeout S   give up when nothing finishes for S s (120)
#   --workdir DIR       where the temporary directory goes (/var/tmp)
#   --keep              keep the temporary directory
#   --json              one JSON object instead of the table
# env: BIN (default target/release/ringmail)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
SCENARIO=$root/tools/scenarios/providers.toml
SKIP_POSTFIX=0
STALL=120
WORKDIR=/var/tmp
KEEP=0
JSON=0
BIN=${BIN:-$root/target/release/ringmail}

die() { echo "compare_scenario: error: $*" >&2; exit 1; }
say() { echo "compare_scenario: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --scenario) SCENARIO=${2-}; shift 2 ;;
    --skip-postfix) SKIP_POSTFIX=1; shift ;;
    --stall-timeout) STALL=${2-}; shift 2 ;;
    --workdir) WORKDIR=${2-}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ -x "$BIN" ] || die "$BIN not found: cargo build --release first"
[ -f "$SCENARIO" ] || die "no scenario $SCENARIO"
command -v python3 >/dev/null || die "python3 is needed"
if [ "$SKIP_POSTFIX" = 0 ]; then
  for b in /usr/sbin/postfix /usr/sbin/postconf /usr/sbin/sendmail /usr/sbin/postkick /usr/sbin/postqueue; do
    [ -x "$b" ] || die "$b missing: install Debian's postfix package (tools/test.sh does), or pass --skip-postfix"
  done
  [ "$(id -u)" = 0 ] || die "the private Postfix instance needs root; run as root or pass --skip-postfix"
fi

WORK=$(mktemp -d "$WORKDIR/ringmail-scenario-vs-postfix.XXXXXX")
chmod 755 "$WORK"
SINK_PID=
PF_ETC=
PF_STARTED=0

stop_postfix() {
  [ "$PF_STARTED" = 1 ] || return 0
  PF_STARTED=0
  /usr/sbin/postfix -c "$PF_ETC" stop >>"$WORK/postfix-control.log" 2>&1 || true
}
cleanup() {
  local rc=$?
  trap - EXIT
  stop_postfix
  if [ -n "$SINK_PID" ]; then kill -TERM "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- 1. ringmail
say "ringmail: bench --scenario $SCENARIO"
"$BIN" bench --scenario "$SCENARIO" --json --workdir "$WORK" --stall-timeout "$STALL" > "$WORK/ringmail.json" \
  || die "ringmail bench --scenario failed (exit $?); see $WORK"
say "ringmail: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f msg/s = %.1f%% of the limit, lost %d" % (r["messages_per_second"], r["percent_of_limit"], r["lost"]))' "$WORK/ringmail.json")"

# ---------------------------------------------------------------- 2. Postfix
if [ "$SKIP_POSTFIX" = 0 ]; then
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0)); print(s.getsockname()[1])')
  "$BIN" sink --scenario "$SCENARIO" --port "$PORT" --stats-every 0 > "$WORK/sinks.json" 2> "$WORK/sinks.err" &
  SINK_PID=$!
  for _ in $(seq 1 100); do grep -q '^dns ' "$WORK/sinks.err" 2>/dev/null && break; sleep 0.1; done
  grep -q '^dns ' "$WORK/sinks.err" || { cat "$WORK/sinks.err" >&2; die "the scenario's sinks did not start"; }
  "$BIN" bench --scenario "$SCENARIO" --export "$WORK/export" --export-port "$PORT"
  N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$WORK/export/limit.json")

  P=$WORK/pf
  PF_ETC=$P/etc
  mkdir -p "$PF_ETC" "$P/queue" "$P/data" "$P/held"
  chown postfix: "$P/data"
  if [ -f /etc/postfix/master.cf ]; then cp /etc/postfix/master.cf "$PF_ETC/"; else cp /usr/share/postfix/master.cf.dist "$PF_ETC/master.cf"; fi
  cp "$WORK/export/postfix/transport" "$PF_ETC/transport"
  echo "scenario.invalid discard:" >> "$PF_ETC/transport"
  cat > "$PF_ETC/main.cf" <<EOF
# private benchmark instance: ringmail tools/compare_scenario.sh
compatibility_level = 3.6
config_directory = $PF_ETC
queue_directory = $P/queue
data_directory = $P/data
maillog_file = $P/maillog
myhostname = postfix.bench.localhost
mydomain = bench.localhost
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
# every scenario domain is in the map; anything else must not go out
transport_maps = texthash:$PF_ETC/transport
default_transport = error:not in the scenario
smtp_host_lookup = native
smtp_dns_support_level = disabled
smtp_tls_security_level = none
biff = no
append_dot_mydomain = no
readme_directory = no
# tuned as a bulk sender
default_process_limit = 200
default_destination_concurrency_limit = 20
smtp_connection_cache_on_demand = yes
in_flow_delay = 0
minimal_backoff_time = 1s
maximal_backoff_time = 5s
queue_run_delay = 1s
EOF
  cat "$WORK/export/postfix/main.cf" >> "$PF_ETC/main.cf"
  pc() { /usr/sbin/postconf -c "$PF_ETC" "$@"; }
  pc -M# smtp/inet
  pc -F '*/*/chroot = n'
  if [ -z "$(pc -M postlog/unix-dgram 2>/dev/null)" ]; then
    pc -M postlog/unix-dgram="postlog unix-dgram n - n - 1 postlogd"
  fi
  while read -r name rest; do
    pc -M "$name/unix=$name $rest"
  done < "$WORK/export/postfix/master.cf"
  inet=$(pc -M | awk '$2 == "inet"')
  [ -z "$inet" ] || die "the private Postfix would listen: $inet"
  /usr/sbin/postfix -c "$PF_ETC" check > "$P/check.log" 2>&1 || { cat "$P/check.log" >&2; die "postfix check failed"; }

  say "Postfix: writing $N messages with sendmail/postdrop while it is stopped (untimed)"
  find "$WORK/export/messages" -name 'm*.eml' -print0 | xargs -0 -r -P 8 -n 50 sh -c '
    for f; do /usr/sbin/sendmail -C "$0" -t -i -f sender@scenario.invalid < "$f" 2>>"$0/../sendmail.err" || exit 255; done' "$PF_ETC" \
    || die "Postfix sendmail failed; see $P/sendmail.err"
  for f in "$P/queue/maildrop"/*; do mv "$f" "$P/held/"; done
  PF_STARTED=1
  /usr/sbin/postfix -c "$PF_ETC" start >> "$WORK/postfix-control.log" 2>&1 || die "postfix start failed"
  for _ in $(seq 1 100); do [ -e "$P/queue/public/pickup" ] && break; sleep 0.1; done
  say "Postfix: renaming the queue files into maildrop/, timing until $N final statuses"
  python3 - "$P/held" "$P/queue/maildrop" "$P/maillog" "$N" "$STALL" "/usr/sbin/postkick -c $PF_ETC public pickup W" > "$WORK/postfix.json" <<'PY'
import json, os, re, subprocess, sys, time
src, dst, log, n, stall, kick = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
t0 = time.monotonic()
for name in sorted(os.listdir(src)):
    os.rename(os.path.join(src, name), os.path.join(dst, name))
subprocess.Popen(kick.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pat = re.compile(rb"to=<u(\d+)@([^>]+)>.*status=(\w+)")
final, deferred, bounced, offset, last = set(), 0, 0, 0, time.monotonic()
while len(final) < n:
    try:
        with open(log, "rb") as f:
            f.seek(offset); data = f.read()
    except FileNotFoundError:
        data = b""
    cut = data.rfind(b"\n") + 1
    offset += cut
    for line in data[:cut].splitlines():
        m = pat.search(line)
        if not m: continue
        st = m.group(3)
        if st == b"deferred": deferred += 1
        elif st in (b"sent", b"bounced"):
            if st == b"bounced": bounced += 1
            final.add(int(m.group(1))); last = time.monotonic()
    if time.monotonic() - last > stall:
        break
    time.sleep(0.05)
secs = time.monotonic() - t0
print(json.dumps({"messages": n, "finished": len(final), "seconds": secs, "messages_per_second": n / secs,
                  "bounced": bounced, "deferred_attempts": deferred}))
PY
  stop_postfix
  kill -TERM "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=
fi

# ---------------------------------------------------------------- 3. report
python3 - "$WORK" "$JSON" "$SKIP_POSTFIX" <<'PY'
import json, os, sys
work, as_json, skip = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
r = json.load(open(os.path.join(work, "ringmail.json")))
out = {"scenario": r["scenario"], "messages": r["messages"], "scenario_limit": r["scenario_limit"],
       "ringmail": {k: r[k] for k in ("messages_per_second", "percent_of_limit", "lost", "over_cap", "deferred_attempts")}}
if not skip:
    p = json.load(open(os.path.join(work, "postfix.json")))
    sinks = [json.loads(l) for l in open(os.path.join(work, "sinks.json")) if l.strip()]
    p["percent_of_limit"] = 100 * p["messages_per_second"] / r["scenario_limit"]
    p["lost"] = p["messages"] - p["finished"]
    p["over_cap"] = any(s["refused_connections"] > 0 or s["throttled"] > 0 for s in sinks)
    p["providers"] = sinks
    out["postfix"] = p
    out["ratio"] = r["messages_per_second"] / p["messages_per_second"]
if as_json:
    print(json.dumps(out))
else:
    print(f"provider scenario {out['scenario']}: {out['messages']} messages, limit {out['scenario_limit']:.0f} msg/s")
    for k in ("ringmail", "postfix"):
        if k in out:
            x = out[k]
            print(f"  {k:<9} {x['messages_per_second']:8.0f} msg/s  {x['percent_of_limit']:5.1f}% of the limit  "
                  f"lost {x['lost']}  deferred attempts {x['deferred_attempts']}  over a cap: {x['over_cap']}")
    if "ratio" in out:
        print(f"  ringmail / Postfix = {out['ratio']:.2f}")
PY
