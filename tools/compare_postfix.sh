#!/usr/bin/env bash
# Peer comparison (issue 3, item 9): the same bulk send through ringmail and
# through Postfix, in one run on this machine, into the same receiver
# (Postfix's own smtp-sink on 127.0.0.1), next to the ceiling that
# smtp-source reaches straight into that sink.
#
#   1. ceiling   smtp-source -s SESSIONS -d -l SIZE -m N  ->  smtp-sink,
#                measured first, after each ringmail run, and last; each
#                ringmail figure is compared with the mean of the two
#                ceilings measured just before and just after it (the mean
#                of all is shown too)
#   2. ringmail  N staged files renamed into spool/pickup/ of a running
#                `ringmail serve` (relayhost = the sink), timed until the
#                daemon has logged N `status=sent`; then `ringmail bench`
#                (bundled sink) as a second ringmail figure
#   3. Postfix   a private instance from Debian's package (own config, queue
#                and data directories under the work dir; no smtpd, nothing
#                listens, except with --paths smtp: one smtpd on 127.0.0.1),
#                relayhost = the same sink, tuned as a bulk sender;
#                M messages through its spool path (sendmail -> postdrop ->
#                maildrop -> pickup -> cleanup -> qmgr -> smtp), timed until
#                its maillog has M `status=sent`
#   4. one table (or --json: one JSON object) with the rates, the
#      ringmail/Postfix ratio and ringmail as a percentage of the ceiling
#
# Injection paths (--paths, comma-separated; default: spool):
#   spool     as above: files renamed into ringmail's pickup/, Postfix's
#             maildrop/ (--postfix-inject says how)
#   smtp      smtp-source -s SESSIONS -d -l SIZE into a relay [[listener]]
#             of ringmail (its 250 comes after the group commit) and into a
#             private Postfix smtpd on 127.0.0.1 (smtp-source -> smtpd ->
#             cleanup -> qmgr -> smtp); both relay to the same sink and are
#             timed from the first connection to the last status=sent, so
#             each figure is an SMTP hop in and one out, next to the
#             ceiling of one hop (smtp-source -> smtp-sink)
#   sendmail  `ringmail-sendmail -t -i` (the lean sendmail binary beside
#             $BIN; `ringmail sendmail` when it is missing) with the daemon running (it commits
#             through spool/submit.sock), PARALLEL processes at a time,
#             against Postfix's live mode (sendmail -t -i, PARALLEL at a
#             time); both timed to the last status=sent
#
# Postfix injection (--postfix-inject):
#   staged (default)  the same scenario as ringmail's: the messages are written
#                     with Postfix's sendmail/postdrop while Postfix is stopped
#                     (untimed, like ringmail's staging), moved aside, Postfix
#                     is started, and the clock starts when they are renamed
#                     back into maildrop/ and pickup is kicked.
#   live              timed from the first `sendmail -t -i` (PARALLEL at a
#                     time); this includes the per-message cost of the
#                     sendmail and postdrop processes (~14 ms each here).
#   both              staged, then live, on the same instance.
#
# Everything is loopback: the sink listens on 127.0.0.1 only, both MTAs relay
# to [127.0.0.1]:PORT, Postfix runs no smtpd but the one on 127.0.0.1 of the
# smtp path (inet_interfaces = loopback-only besides). Must run as root (Postfix's master runs as root).
#
# usage: tools/compare_postfix.sh [options]
#   --messages N           ringmail and ceiling messages (100000)
#   --postfix-messages M   Postfix messages (20000); rates are compared
#   --size BYTES           message size (2048)
#   --sessions K           smtp-source parallel sessions (20)
#   --both-backends        ringmail with RINGMAIL_IO=uring and =epoll
#                          (default: one run, io backend auto)
#   --epoll-first          with --both-backends: epoll before io_uring (the
#                          default order is io_uring first; alternate runs
#                          to see whether the order matters)
#   --paths LIST           spool,smtp,sendmail: injection paths to measure
#                          (spool)
#   --postfix-inject MODE  staged | live | both (staged); the sendmail path
#                          adds live
#   --parallel P           parallel sendmail processes for Postfix (8)
#   --skip-bench           no `ringmail bench` (bundled sink) figure
#   --skip-postfix         no Postfix (no root needed then)
#   --no-sync              do not sync ringmail's staged files before the
#                          timed run (as `ringmail bench` does: ext4 then may
#                          never allocate blocks for files unlinked soon, and
#                          with `discard` that makes unlinks cheaper; Postfix's
#                          postdrop fsyncs each file, so the default syncs)
#   --stall-timeout S      give up when no message is delivered for S s (60)
#   --workdir DIR          where the temporary directory goes (/var/tmp:
#                          a real disk, so fsync counts)
#   --keep                 keep the temporary directory (logs, configs)
#   --json                 print one JSON object instead of the table
# env: BIN (default target/release/ringmail), SHARDS (ringmail's shard
#      count; default one per core), SENDMAIL_BIN (the sendmail command of
#      the sendmail path; default: ringmail-sendmail beside BIN, e.g. the
#      static build of tools/build_static_sendmail.sh)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

N=100000
PF_N=20000
SIZE=2048
SESSIONS=20
BOTH=0
EPOLL_FIRST=0
PF_INJECT=staged
PATHS=spool
PARALLEL=8
SKIP_BENCH=0
SKIP_POSTFIX=0
SYNC=1
STALL=60
WORKDIR=/var/tmp
KEEP=0
JSON=0
BIN=${BIN:-$root/target/release/ringmail}

die() { echo "compare_postfix: error: $*" >&2; exit 1; }
say() { echo "compare_postfix: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit "${1:-0}"; }
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --messages) posint "$1" "${2-}"; N=$2; shift 2 ;;
    --postfix-messages) posint "$1" "${2-}"; PF_N=$2; shift 2 ;;
    --size) posint "$1" "${2-}"; SIZE=$2; shift 2 ;;
    --sessions) posint "$1" "${2-}"; SESSIONS=$2; shift 2 ;;
    --both-backends) BOTH=1; shift ;;
    --epoll-first) EPOLL_FIRST=1; shift ;;
    --postfix-inject)
      case "${2-}" in staged|live|both) PF_INJECT=$2 ;; *) die "--postfix-inject is staged, live or both" ;; esac
      shift 2 ;;
    --paths)
      [[ "${2-}" =~ ^(spool|smtp|sendmail)(,(spool|smtp|sendmail))*$ ]] || die "--paths is a comma-separated list of spool, smtp, sendmail"
      PATHS=$2; shift 2 ;;
    --parallel) posint "$1" "${2-}"; PARALLEL=$2; shift 2 ;;
    --skip-bench) SKIP_BENCH=1; shift ;;
    --skip-postfix) SKIP_POSTFIX=1; shift ;;
    --no-sync) SYNC=0; shift ;;
    --stall-timeout) posint "$1" "${2-}"; STALL=$2; shift 2 ;;
    --workdir) [ -n "${2-}" ] || die "--workdir needs a directory"; WORKDIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare_postfix: unknown option '$1'" >&2; usage 2 ;;
  esac
done

has_path() { [[ ",$PATHS," == *",$1,"* ]]; }
if has_path sendmail; then
  case "$PF_INJECT" in staged) PF_INJECT=both ;; esac
fi

# ---------------------------------------------------------------- checks
[ -x "$BIN" ] || die "$BIN not found: cargo build --release first"
command -v python3 >/dev/null || die "python3 is needed"
SMTP_SINK=/usr/sbin/smtp-sink
SMTP_SOURCE=/usr/sbin/smtp-source
for b in "$SMTP_SINK" "$SMTP_SOURCE"; do
  [ -x "$b" ] || die "$b missing: install Debian's postfix package (debconf postfix/main_mailer_type = No configuration)"
done
if [ "$SKIP_POSTFIX" = 0 ]; then
  for b in /usr/sbin/postfix /usr/sbin/postconf /usr/sbin/sendmail /usr/sbin/postqueue /usr/sbin/postkick /usr/sbin/postdrop; do
    [ -x "$b" ] || die "$b missing: install Debian's postfix package"
  done
  [ -f /etc/postfix/master.cf ] || [ -f /usr/share/postfix/master.cf.dist ] || die "no master.cf to start from (/etc/postfix/master.cf or /usr/share/postfix/master.cf.dist)"
  [ "$(id -u)" = 0 ] || die "the private Postfix instance needs root (its master runs as root); run as root or pass --skip-postfix"
  id postfix >/dev/null 2>&1 || die "no 'postfix' user: is Debian's postfix package installed?"
fi
[ -d "$WORKDIR" ] || die "--workdir $WORKDIR is not a directory"

WORK=$(mktemp -d "$WORKDIR/ringmail-vs-postfix.XXXXXX")
chmod 755 "$WORK"   # the postfix user must reach its queue and data directories
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
HELPER=$WORK/helper.py

SINK_PID=
DAEMON_PID=
WAITER_PID=
PF_ETC=
PF_STARTED=0

stop_postfix() {
  [ "$PF_STARTED" = 1 ] || return 0
  PF_STARTED=0
  /usr/sbin/postfix -c "$PF_ETC" stop >>"$WORK/postfix-control.log" 2>&1 || true
  # `postfix status` asks the master's lock, so a zombie master (reparented
  # to an init that does not reap) does not count as running.
  local i
  for i in $(seq 1 100); do
    /usr/sbin/postfix -c "$PF_ETC" status >/dev/null 2>&1 || return 0
    sleep 0.1
  done
  local mpid
  mpid=$(tr -dc 0-9 < "$WORK/pf/queue/pid/master.pid" 2>/dev/null || true)
  if [ -n "$mpid" ]; then
    say "Postfix did not stop in 10 s: killing its master, pid $mpid"
    kill -KILL "$mpid" 2>/dev/null || true
  fi
}

stop_daemon() {
  [ -n "$DAEMON_PID" ] || return 0
  kill -TERM "$DAEMON_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$DAEMON_PID" 2>/dev/null || true
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=
}

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM      # finish cleaning up
  if [ -n "$WAITER_PID" ]; then kill -TERM "$WAITER_PID" 2>/dev/null || true; fi
  stop_daemon
  stop_postfix
  if [ -n "$SINK_PID" ]; then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then
    say "work directory kept: $WORK"
  elif [ "$rc" != 0 ]; then
    # keep the logs and configs, not the bulk of messages and queues
    rm -rf "$WORK"/ringmail-*/staging "$WORK"/ringmail-*/spool "$WORK"/pf/staging-* "$WORK"/pf/held \
      "$WORK"/pf/queue "$WORK"/ringmail-bench.* 2>/dev/null || true
    say "logs and configs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- helper
cat > "$HELPER" <<'PY'
import atexit, json, os, re, signal, socket, subprocess, sys, time

def freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()

def waitport(port, timeout):
    end = time.time() + float(timeout)
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", int(port)), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")

def sinkcount(path):
    """smtp-sink -c writes 'sess=A quit=B mesg=C\\r' on every change."""
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        print(0); return
    m = re.findall(rb"mesg=(\d+)", data[-4096:])
    print(int(m[-1]) if m else 0)

def waitfor(path, needle, timeout):
    end = time.time() + float(timeout)
    while time.time() < end:
        try:
            if needle.encode() in open(path, "rb").read():
                return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    sys.exit(f"'{needle}' did not appear in {path} within {timeout} s")

def movefiles(src, dst):
    n = 0
    for name in os.listdir(src):
        os.rename(os.path.join(src, name), os.path.join(dst, name)); n += 1
    print(n)

def cpu_ticks():
    """(all, steal) jiffies of the whole machine from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f[:8]), f[7] if len(f) > 7 else 0

def steal_percent(before, after):
    """Share of the machine's time the hypervisor gave to others between
    two cpu_ticks() readings: a run with much steal says little."""
    total = after[0] - before[0]
    return 100.0 * (after[1] - before[1]) / total if total > 0 else 0.0

def stealsnap():
    print("%d %d" % cpu_ticks())

def stealsince(all_ticks, steal):
    print("%.1f" % steal_percent((int(all_ticks), int(steal)), cpu_ticks()))

def run(a):
    """Times from just before the renames (if any) until the log, read from
    its size at the start, has `count` status=sent lines."""
    count, stall = int(a["count"]), float(a["stall"])
    log, pid = a["log"], int(a.get("pid") or 0)
    kick = a.get("kick") or ""
    if a.get("offset"):
        offset = int(a["offset"])
    else:
        offset = os.path.getsize(log) if os.path.exists(log) else 0
    names = sorted(os.listdir(a["src"])) if a.get("src") else []
    ticks0 = cpu_ticks()
    t0 = time.monotonic()
    if a.get("ready"):
        open(a["ready"], "w").close()
    for name in names:
        os.rename(os.path.join(a["src"], name), os.path.join(a["dst"], name))
    t_renamed = time.monotonic()
    # A kick (Postfix: postkick ... pickup W) runs in the background: it can
    # block until pickup is idle, and the clock must not wait for it. One
    # after the renames; another only if nothing is delivered for 5 s.
    kicks = []
    def stop_kicks():
        for k in kicks:
            if k.poll() is None:
                k.kill()
            k.wait()
    atexit.register(stop_kicks)
    def do_kick():
        kicks.append(subprocess.Popen(kick.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if kick:
        do_kick()
    sent = deferred = bounced = 0
    rest = b""
    last_progress = time.monotonic()
    while True:
        kicks = [k for k in kicks if k.poll() is None]
        if kick and not kicks and time.monotonic() - last_progress > 5.0:
            do_kick()
        grew = False
        if os.path.exists(log):
            with open(log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                offset += len(chunk)
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                lines, rest = data[:cut], data[cut:]
                s = lines.count(b"status=sent")
                sent += s
                deferred += lines.count(b"status=deferred")
                bounced += lines.count(b"status=bounced")
                grew = s > 0
        now = time.monotonic()
        if grew:
            last_progress = now
        if sent + bounced >= count:
            break
        if pid:
            try:
                st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                st = "X"
            if st in ("Z", "X"):
                sys.exit(f"the daemon (pid {pid}) exited after {sent} of {count} status=sent; see {log}")
        if now - last_progress > stall:
            sys.exit(f"no progress for {stall:.0f} s: {sent} of {count} status=sent "
                     f"({deferred} deferred, {bounced} bounced); see {log}")
        time.sleep(0.02)
    t1 = time.monotonic()
    # Input files not yet deleted when the clock stops: work pushed past the
    # end of the run (each is unlinked later, or queued again after a crash).
    left = len(os.listdir(a["dst"])) if a.get("dst") and a.get("src") else 0
    if bounced:
        sys.exit(f"{bounced} messages bounced ({sent} sent); see {log}")
    out = {"seconds": t1 - t0, "rename_seconds": t_renamed - t0, "renamed": len(names),
           "sent": sent, "deferred": deferred, "bounced": bounced, "input_files_left": left,
           "messages_per_second": count / (t1 - t0),
           "steal_percent": steal_percent(ticks0, cpu_ticks())}
    if pid:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        out["daemon_cpu_seconds"] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    print(json.dumps(out))

def merge(base, extra):
    """merge JSON objects given as strings / k=v pairs into one line."""
    o = json.loads(base)
    for kv in extra:
        k, v = kv.split("=", 1)
        try:
            o[k] = json.loads(v)
        except ValueError:
            o[k] = v
    print(json.dumps(o))

# Which Postfix runs each ringmail path is compared with.
PEERS = {"spool": ("staged", "live"), "smtp": ("smtp",), "sendmail": ("live",)}

def report(path, as_json, meta):
    meta = json.loads(meta)
    rows = [json.loads(l) for l in open(path) if l.strip()]
    ceilings = [r for r in rows if r["kind"] == "ceiling"]
    ceiling = None
    if ceilings:
        # The mean of the measurements before and after the MTAs ran.
        ceiling = dict(ceilings[0])
        ceiling.pop("when", None)
        ceiling["messages_per_second"] = sum(r["messages_per_second"] for r in ceilings) / len(ceilings)
        ceiling["seconds"] = sum(r["seconds"] for r in ceilings) / len(ceilings)
        ceiling["sink_counted"] = min(r["sink_counted"] for r in ceilings)
        for r in ceilings:
            ceiling[f"{r['when']}_messages_per_second"] = r["messages_per_second"]
    ringmail = [r for r in rows if r["kind"].startswith("ringmail_") and r["kind"] != "ringmail_bench"]
    bench = [r for r in rows if r["kind"] == "ringmail_bench"]
    pfx = [r for r in rows if r["kind"] == "postfix"]
    def adjacent_ceiling(r):
        """The mean of the ceilings measured just before and just after
        run r (file order), or the overall mean when r has no neighbour."""
        i = rows.index(r)
        before = [c for c in rows[:i] if c["kind"] == "ceiling"][-1:]
        after = [c for c in rows[i + 1:] if c["kind"] == "ceiling"][:1]
        near = before + after
        if not near:
            return ceiling["messages_per_second"]
        return sum(c["messages_per_second"] for c in near) / len(near)
    comps = []
    for r in ringmail:
        p = r["kind"][len("ringmail_"):]
        c = {"path": p, "io_backend": r["io_backend"], "ringmail_messages_per_second": r["messages_per_second"]}
        if ceiling and p != "sendmail":
            c["adjacent_ceiling_messages_per_second"] = adjacent_ceiling(r)
            c["percent_of_ceiling"] = 100.0 * r["messages_per_second"] / c["adjacent_ceiling_messages_per_second"]
            c["percent_of_mean_ceiling"] = 100.0 * r["messages_per_second"] / ceiling["messages_per_second"]
        for q in pfx:
            if q["inject"] in PEERS[p]:
                c[f"ratio_to_postfix_{q['inject']}"] = r["messages_per_second"] / q["messages_per_second"]
        comps.append(c)
    if as_json:
        out = dict(meta)
        out["ceiling"] = ceiling
        for p in PEERS:
            out[f"ringmail_{p}"] = [r for r in ringmail if r["kind"] == f"ringmail_{p}"]
        out["ringmail_bench"] = bench
        out["postfix"] = pfx
        out["comparisons"] = comps
        spool = [c for c in comps if c["path"] == "spool"]
        if spool:
            best = max(spool, key=lambda c: c["ringmail_messages_per_second"])
            if pfx and f"ratio_to_postfix_{pfx[0]['inject']}" in best:
                out["ratio_ringmail_to_postfix"] = best[f"ratio_to_postfix_{pfx[0]['inject']}"]
            if ceiling:
                out["ringmail_percent_of_ceiling"] = best["percent_of_ceiling"]
        for o in [out["ceiling"]] + ringmail + bench + pfx:
            if o: o.pop("kind", None)
        print(json.dumps(out, indent=None))
        return
    print(f"ringmail vs Postfix: {meta['size']} B messages, 1 recipient each, into Postfix's smtp-sink "
          f"on 127.0.0.1:{meta['sink_port']} ({os.cpu_count()} CPUs, work dir {meta['workdir']}"
          + ("" if meta["staged_files_synced"] else "; ringmail's staged files not synced") + ")")
    print()
    w = 66
    print(f"{'figure':<{w}} {'messages':>9} {'seconds':>8} {'msg/s':>8}  notes")
    print("-" * (w + 40))
    def line(label, r, notes=""):
        print(f"{label:<{w}} {r['messages']:>9} {r['seconds']:>8.2f} {r['messages_per_second']:>8.0f}  {notes}")
    if ceiling:
        runs = ", ".join(f"{r['when']} {r['messages_per_second']:.0f}"
                         + (f" ({r['steal_percent']:.0f} % steal)" if r.get("steal_percent") else "")
                         for r in ceilings)
        line(f"ceiling: smtp-source -s {meta['sessions']} -d -> smtp-sink (mean)", ceiling,
             f"{runs}; sink counted {ceiling['sink_counted']} (least)")
    labels = {"spool": "ringmail spool (pickup/ rename) -> smtp-sink",
              "smtp": f"ringmail smtp (smtp-source -s {meta['sessions']} -> listener) -> smtp-sink",
              "sendmail": f"{meta.get('sendmail_cmd', 'ringmail sendmail')} -t -i ({meta['parallel']} parallel) -> smtp-sink"}
    for r in ringmail:
        p = r["kind"][len("ringmail_"):]
        note = (f"sink counted {r['sink_counted']}, daemon CPU {r['daemon_cpu_seconds']:.1f} s "
                f"({1e6 * r['daemon_cpu_seconds'] / r['messages']:.0f} us/msg), {r['shards']} shards")
        if p == "spool":
            note += f", {r.get('input_files_left', 0)} input files left at the end"
        else:
            note += f", injection alone {r['inject_seconds']:.1f} s"
        note += f", {r.get('steal_percent', 0):.0f} % steal"
        line(f"{labels[p]} [{r['io_backend']}]", r, note)
    for r in bench:
        line(f"ringmail bench, bundled sink [{r['io_backend']}]", r,
             f"lost {r['lost']}, duplicates {r['duplicates']}, p99 {r['latency_p99_ms']:.0f} ms")
    for r in pfx:
        label = {"staged": "Postfix spool (staged maildrop/ rename) -> smtp-sink",
                 "live": f"Postfix spool (sendmail -t -i, {meta['parallel']} parallel) -> smtp-sink",
                 "smtp": f"Postfix smtp (smtp-source -s {meta['sessions']} -> smtpd) -> smtp-sink"}[r["inject"]]
        note = f"sink counted {r['sink_counted']}"
        if r["inject"] != "staged":
            note += f", injection alone {r['inject_seconds']:.1f} s"
        line(label, r, note)
    print()
    for c in comps:
        parts = []
        for q in pfx:
            key = "ratio_to_postfix_" + q["inject"]
            if key in c:
                parts.append(f"{c[key]:.1f}x Postfix ({q['inject']})")
        if "percent_of_ceiling" in c:
            parts.append(f"{c['percent_of_ceiling']:.0f} % of the ceiling measured around it "
                         f"({c['adjacent_ceiling_messages_per_second']:.0f}; "
                         f"{c['percent_of_mean_ceiling']:.0f} % of the mean of all)")
        print(f"ringmail {c['path']} [{c['io_backend']}]: " + (", ".join(parts) or "no peer figure"))

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "freeport": freeport()
    elif cmd == "waitport": waitport(*args)
    elif cmd == "sinkcount": sinkcount(*args)
    elif cmd == "waitfor": waitfor(*args)
    elif cmd == "movefiles": movefiles(*args)
    elif cmd == "run": run(dict(kv.split("=", 1) for kv in args))
    elif cmd == "stealsnap": stealsnap()
    elif cmd == "stealsince": stealsince(*args)
    elif cmd == "merge": merge(args[0], args[1:])
    elif cmd == "report": report(args[0], args[1] == "1", args[2])
    else: sys.exit(f"unknown helper command {cmd}")
PY
h() { python3 "$HELPER" "$@"; }

now() { date +%s.%N; }
stage() { # DIR COUNT [nosync]: COUNT message files of SIZE bytes, then sync
  mkdir -p "$1"
  python3 "$here/gen_spool_files.py" "$1" "$2" "$SIZE"
  if [ "$SYNC" = 1 ] || [ "${3-}" != nosync ]; then sync; fi
}
sink_delta() { # BEFORE: messages the sink counted since BEFORE
  sleep 0.3
  echo $(( $(h sinkcount "$WORK/sink.out") - $1 ))
}

# ---------------------------------------------------------------- the sink
SINK_PORT=$(h freeport)
sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u postfix)
say "starting smtp-sink on 127.0.0.1:$SINK_PORT"
"$SMTP_SINK" -c "${sink_user[@]}" "127.0.0.1:$SINK_PORT" 1000 > "$WORK/sink.out" 2> "$WORK/sink.err" &
SINK_PID=$!
h waitport "$SINK_PORT" 10 || { cat "$WORK/sink.err" >&2; die "smtp-sink did not start"; }
sink_alive() { kill -0 "$SINK_PID" 2>/dev/null || { cat "$WORK/sink.err" >&2; die "smtp-sink exited"; }; }

# ---------------------------------------------------------------- 1. ceiling
# Measured first and again last: on a shared machine the speed drifts during
# a run, and the mean of the two brackets the MTA figures measured between.
ceiling() { # WHEN: before | after
  say "ceiling ($1): smtp-source -s $SESSIONS -d -l $SIZE -m $N -> smtp-sink"
  local before t0 t1 counted rate
  before=$(h sinkcount "$WORK/sink.out")
  snap=$(h stealsnap)
  t0=$(now)
  "$SMTP_SOURCE" -d -s "$SESSIONS" -l "$SIZE" -m "$N" -c -M bench.localhost \
    -f sender@example.com -t rcpt@example.net "127.0.0.1:$SINK_PORT" > "$WORK/source.out" 2>&1 \
    || { tail -5 "$WORK/source.out" >&2; die "smtp-source failed"; }
  t1=$(now)
  steal=$(h stealsince $snap)
  sink_alive
  counted=$(sink_delta "$before")
  rate=$(python3 -c "print($N/($t1-$t0))")
  echo "{\"kind\":\"ceiling\",\"when\":\"$1\",\"messages\":$N,\"seconds\":$(python3 -c "print($t1-$t0)"),\"messages_per_second\":$rate,\"sink_counted\":$counted,\"sessions\":$SESSIONS,\"steal_percent\":$steal}" >> "$RESULTS"
  say "ceiling ($1): $(printf %.0f "$rate") msg/s (sink counted $counted)"
  [ "$counted" = "$N" ] || say "warning: the sink counted $counted messages, not $N"
}
ceiling before

# ---------------------------------------------------------------- 2. ringmail
if [ "$BOTH" = 1 ]; then
  if [ "$EPOLL_FIRST" = 1 ]; then backends=(epoll uring); else backends=(uring epoll); fi
else
  backends=(auto)
fi
rm_paths=()
for p in spool smtp sendmail; do has_path "$p" && rm_paths+=("$p"); done

# Starts `ringmail serve` on DIR/ringmail.toml with io backend BE; sets
# DAEMON_PID, backend and shards.
start_ringmail() { # DIR BE
  RINGMAIL_IO=$2 "$BIN" serve --config "$1/ringmail.toml" 2> "$1/daemon.log" &
  DAEMON_PID=$!
  h waitfor "$1/daemon.log" "daemon started" 15 || { tail -5 "$1/daemon.log" >&2; die "ringmail serve did not start"; }
  backend=$(grep -o "io backend [a-z_]*" "$1/daemon.log" | head -1 | awk '{print $3}')
  shards=$(grep -o "[0-9]* shards" "$1/daemon.log" | head -1 | awk '{print $1}')
}

# Runs WAITER (the helper's `run`, timing until COUNT status=sent) in the
# background and, once its clock runs, the command given; prints the
# waiter's JSON with inject_seconds (how long the command took) added.
timed_injection() { # LOG PID COUNT OUT -- command...
  local log=$1 pid=$2 count=$3 out=$4 t0 t1
  shift 5
  rm -f "$out.ready"
  h run count="$count" stall="$STALL" log="$log" pid="$pid" ready="$out.ready" > "$out" &
  WAITER_PID=$!
  while [ ! -e "$out.ready" ]; do
    kill -0 "$WAITER_PID" 2>/dev/null || die "the waiter for $log exited early"
    sleep 0.02
  done
  t0=$(now)
  "$@" || { kill -TERM "$WAITER_PID" 2>/dev/null; WAITER_PID=; return 1; }
  t1=$(now)
  wait "$WAITER_PID" || { WAITER_PID=; return 1; }
  WAITER_PID=
  h merge "$(cat "$out")" inject_seconds="$(python3 -c "print($t1-$t0)")"
}

smtp_source_into() { # PORT COUNT LOG: smtp-source's bulk run into 127.0.0.1:PORT
  "$SMTP_SOURCE" -d -s "$SESSIONS" -l "$SIZE" -m "$2" -c -M bench.localhost \
    -f sender@example.com -t rcpt@example.net "127.0.0.1:$1" > "$3" 2>&1 \
    || { tail -5 "$3" >&2; return 1; }
}

# The sendmail command users install as /usr/sbin/sendmail: the lean
# `ringmail-sendmail` built beside $BIN, else `ringmail sendmail`.
if [ -n "${SENDMAIL_BIN-}" ]; then
  SENDMAIL_CMD=("$SENDMAIL_BIN")
elif [ -x "${BIN%/*}/ringmail-sendmail" ]; then
  SENDMAIL_CMD=("${BIN%/*}/ringmail-sendmail")
else
  SENDMAIL_CMD=("$BIN" sendmail)
fi

ringmail_sendmails() { # DIR: every staged file through ringmail's sendmail -t -i
  find "$1/staging" -name 'm*.eml' -print0 | xargs -0 -r -P "$PARALLEL" -n 50 sh -c '
    cfg=$0; bin=$1; sub=$2; shift 2
    for f; do
      "$bin" $sub -C "$cfg" -t -i -f sender@example.com < "$f" 2>>"${cfg%/*}/sendmail.err" || exit 255
    done' "$1/ringmail.toml" "${SENDMAIL_CMD[0]}" "${SENDMAIL_CMD[1]-}"
}

for be in "${backends[@]}"; do
  for path in "${rm_paths[@]}"; do
    d=$WORK/ringmail-$be-$path
    mkdir -p "$d/spool/maildrop" "$d/spool/pickup" "$d/spool/queue" "$d/spool/corrupt"
    listener=
    if [ "$path" = smtp ]; then
      RM_SMTP_PORT=$(h freeport)
      listener=$(printf '[[listener]]\naddress = "127.0.0.1:%s"\n' "$RM_SMTP_PORT")
    fi
    cat > "$d/ringmail.toml" <<TOML
spool_dir = "$d/spool"
myhostname = "bench.localhost"
relayhost = "[127.0.0.1]:$SINK_PORT"
pickup_settle_ms = 0
# as ringmail bench does; Postfix's pickup is kicked right after the renames
pickup_interval_ms = 50
smtpd_passwd_file = "$d/no-passwd"
${SHARDS:+shards = $SHARDS}
$listener
TOML
    count=$N
    case "$path" in
      spool) say "ringmail [$be]: staging $N files of $SIZE B"; stage "$d/staging" "$N" nosync ;;
      sendmail) count=$PF_N; say "ringmail [$be, sendmail]: staging $PF_N files of $SIZE B"; stage "$d/staging" "$PF_N" ;;
    esac
    start_ringmail "$d" "$be"
    before=$(h sinkcount "$WORK/sink.out")
    case "$path" in
      spool)
        say "ringmail [$be -> ${backend:-?}, ${shards:-?} shards]: renaming $N files into pickup/, timing until $N status=sent"
        res=$(h run count="$N" stall="$STALL" log="$d/daemon.log" pid="$DAEMON_PID" src="$d/staging" dst="$d/spool/pickup") \
          || { tail -5 "$d/daemon.log" >&2; die "ringmail [$be] run failed"; }
        ;;
      smtp)
        h waitport "$RM_SMTP_PORT" 10
        say "ringmail [$be -> ${backend:-?}, ${shards:-?} shards, smtp]: smtp-source -s $SESSIONS -d -m $N into its listener, timing until $N status=sent"
        res=$(timed_injection "$d/daemon.log" "$DAEMON_PID" "$N" "$d/run.json" -- smtp_source_into "$RM_SMTP_PORT" "$N" "$d/source.out") \
          || { tail -5 "$d/daemon.log" >&2; die "ringmail [$be, smtp] run failed"; }
        ;;
      sendmail)
        say "ringmail [$be -> ${backend:-?}, ${shards:-?} shards, sendmail]: ringmail sendmail -t -i x $PF_N ($PARALLEL parallel), timing until $PF_N status=sent"
        res=$(timed_injection "$d/daemon.log" "$DAEMON_PID" "$PF_N" "$d/run.json" -- ringmail_sendmails "$d") \
          || { tail -5 "$d/daemon.log" "$d/sendmail.err" >&2; die "ringmail [$be, sendmail] run failed"; }
        ;;
    esac
    sink_alive
    counted=$(sink_delta "$before")
    stop_daemon
    sent_total=$(grep -c "status=sent" "$d/daemon.log" || true)
    h merge "$res" kind="ringmail_$path" messages="$count" requested_backend="$be" io_backend="${backend:-unknown}" \
      shards="${shards:-0}" sink_counted="$counted" sent_total="$sent_total" >> "$RESULTS"
    say "ringmail [$be, $path]: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["messages_per_second"]))') msg/s (sink counted $counted, daemon logged $sent_total status=sent)"
    [ "$counted" = "$count" ] || say "warning: the sink counted $counted messages, not $count"
    [ "$sent_total" = "$count" ] || say "warning: the daemon logged $sent_total status=sent, not $count"
    [ "$KEEP" = 1 ] || rm -rf "$d/spool" "$d/staging"
    # Right after each ringmail run over a network-speed path: its figure is
    # compared with the mean of the ceilings measured just before and just
    # after it (the machine's speed drifts within minutes on a shared host).
    [ "$path" = sendmail ] || ceiling "after-$be-$path"
  done
done

if [ "$SKIP_BENCH" = 0 ]; then
  for be in "${backends[@]}"; do
    say "ringmail bench [$be]: --messages $N --size $SIZE (bundled sink)"
    out=$("$BIN" bench --messages "$N" --size "$SIZE" --io-backend "$be" --workdir "$WORK" --json 2> "$WORK/bench-$be.err") \
      || { tail -5 "$WORK/bench-$be.err" >&2; die "ringmail bench [$be] failed"; }
    json=$(printf '%s\n' "$out" | grep '^{' | tail -1)
    [ -n "$json" ] || die "ringmail bench [$be] printed no JSON"
    h merge "$json" kind=ringmail_bench requested_backend="$be" >> "$RESULTS"
    say "ringmail bench [$be]: $(printf '%s' "$json" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["messages_per_second"]))') msg/s"
  done
fi

# ---------------------------------------------------------------- 3. Postfix
if [ "$SKIP_POSTFIX" = 0 ]; then
  P=$WORK/pf
  PF_ETC=$P/etc
  mkdir -p "$PF_ETC" "$P/queue" "$P/data" "$P/held"
  chown postfix: "$P/data"          # master.lock, tlsmgr and verify caches
  if [ -f /etc/postfix/master.cf ]; then cp /etc/postfix/master.cf "$PF_ETC/"; else cp /usr/share/postfix/master.cf.dist "$PF_ETC/master.cf"; fi
  cat > "$PF_ETC/main.cf" <<EOF
# private benchmark instance: ringmail tools/compare_postfix.sh
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
relayhost = [127.0.0.1]:$SINK_PORT
smtp_fallback_relay =
smtp_tls_security_level = none
biff = no
append_dot_mydomain = no
readme_directory = no
# tuned as a bulk sender
default_process_limit = 100
smtp_destination_concurrency_limit = 20
default_destination_concurrency_limit = 20
smtp_connection_cache_on_demand = yes
in_flow_delay = 0
# smtpd (the smtp path only): no DNS lookups of the loopback client
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 1000
EOF
  pc() { /usr/sbin/postconf -c "$PF_ETC" "$@"; }
  pc -M# smtp/inet                  # no smtpd: nothing of this instance listens
  pc -F '*/*/chroot = n'            # Debian's master.cf chroots most services into the queue dir
  if [ -z "$(pc -M postlog/unix-dgram 2>/dev/null)" ]; then
    pc -M postlog/unix-dgram="postlog unix-dgram n - n - 1 postlogd"   # there is no syslog here
  fi
  if has_path smtp; then
    # The only listener: smtpd on loopback, for smtp-source.
    PF_SMTP_PORT=$(h freeport)
    pc -M "127.0.0.1:$PF_SMTP_PORT/inet=127.0.0.1:$PF_SMTP_PORT inet n - n - - smtpd"
  fi
  inet=$(pc -M | awk '$2 == "inet" && $1 !~ /^127\.0\.0\.1:[0-9]+$/')
  [ -z "$inet" ] || die "the private Postfix would listen on a non-loopback port: $inet"
  /usr/sbin/postfix -c "$PF_ETC" check > "$P/check.log" 2>&1 \
    || { cat "$P/check.log" >&2; die "postfix check failed"; }

  pf_start() {
    PF_STARTED=1
    /usr/sbin/postfix -c "$PF_ETC" start >> "$WORK/postfix-control.log" 2>&1 \
      || { tail -5 "$P/maillog" >&2 2>/dev/null; die "postfix start failed"; }
    local i
    for i in $(seq 1 100); do
      [ -e "$P/queue/public/pickup" ] && /usr/sbin/postfix -c "$PF_ETC" status >/dev/null 2>&1 && return 0
      sleep 0.1
    done
    die "Postfix did not come up in 10 s; see $P/maillog"
  }
  inject() { # DIR: every file through Postfix's sendmail -t -i, PARALLEL at a time
    find "$1" -name 'm*.eml' -print0 | xargs -0 -r -P "$PARALLEL" -n 50 sh -c '
      for f; do
        /usr/sbin/sendmail -C "$0" -t -i -f sender@example.com < "$f" 2>>"$0/../sendmail.err" || exit 255
      done' "$PF_ETC"
  }

  modes=()
  if has_path spool; then case "$PF_INJECT" in staged|both) modes+=(staged) ;; esac; fi
  case "$PF_INJECT" in live|both) modes+=(live) ;; esac
  if has_path smtp; then modes+=(smtp); fi
  for mode in "${modes[@]}"; do
    [ "$mode" = smtp ] || stage "$P/staging-$mode" "$PF_N"
    if [ "$mode" = smtp ]; then
      [ "$PF_STARTED" = 1 ] || pf_start
      h waitport "$PF_SMTP_PORT" 10
      say "Postfix [smtp]: smtp-source -s $SESSIONS -d -m $PF_N into its smtpd on 127.0.0.1:$PF_SMTP_PORT, timing until $PF_N status=sent"
      before=$(h sinkcount "$WORK/sink.out")
      res=$(timed_injection "$P/maillog" "" "$PF_N" "$P/smtp.json" -- smtp_source_into "$PF_SMTP_PORT" "$PF_N" "$P/source.out") \
        || { tail -5 "$P/maillog" >&2; die "Postfix [smtp] run failed"; }
    elif [ "$mode" = staged ]; then
      # postdrop writes the queue files into maildrop/ while Postfix is down
      # (untimed, like ringmail's staging); they are moved aside so the
      # clock can start with their rename back.
      [ "$PF_STARTED" = 0 ] || stop_postfix
      say "Postfix [staged]: writing $PF_N messages with sendmail/postdrop while Postfix is stopped (untimed)"
      inject "$P/staging-$mode" || die "Postfix sendmail failed; see $P/sendmail.err"
      moved=$(h movefiles "$P/queue/maildrop" "$P/held")
      [ "$moved" = "$PF_N" ] || die "expected $PF_N files in maildrop/, found $moved"
      sync
      pf_start
      say "Postfix [staged]: renaming $PF_N queue files into maildrop/, kicking pickup, timing until $PF_N status=sent"
      before=$(h sinkcount "$WORK/sink.out")
      res=$(h run count="$PF_N" stall="$STALL" log="$P/maillog" src="$P/held" dst="$P/queue/maildrop" \
              kick="/usr/sbin/postkick -c $PF_ETC public pickup W") \
        || { tail -5 "$P/maillog" >&2; die "Postfix [staged] run failed"; }
      res=$(h merge "$res" inject_seconds=0)
    else
      [ "$PF_STARTED" = 1 ] || pf_start
      say "Postfix [live]: sendmail -t -i x $PF_N ($PARALLEL parallel), timing until $PF_N status=sent"
      before=$(h sinkcount "$WORK/sink.out")
      offset=$(stat -c %s "$P/maillog" 2>/dev/null || echo 0)
      rm -f "$P/live.ready"
      h run count="$PF_N" stall="$STALL" log="$P/maillog" offset="$offset" ready="$P/live.ready" > "$P/live.json" &
      WAITER_PID=$!
      # the clock starts in the waiter; start injecting once it runs
      while [ ! -e "$P/live.ready" ]; do
        kill -0 "$WAITER_PID" 2>/dev/null || die "the Postfix waiter exited early"
        sleep 0.02
      done
      t0=$(now)
      inject "$P/staging-$mode" || die "Postfix sendmail failed; see $P/sendmail.err"
      t1=$(now)
      wait "$WAITER_PID" || { WAITER_PID=; tail -5 "$P/maillog" >&2; die "Postfix [live] run failed"; }
      WAITER_PID=
      res=$(h merge "$(cat "$P/live.json")" inject_seconds="$(python3 -c "print($t1-$t0)")")
    fi
    sink_alive
    counted=$(sink_delta "$before")
    h merge "$res" kind=postfix inject="$mode" messages="$PF_N" sink_counted="$counted" >> "$RESULTS"
    say "Postfix [$mode]: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["messages_per_second"]))') msg/s (sink counted $counted)"
    [ "$counted" = "$PF_N" ] || say "warning: the sink counted $counted messages, not $PF_N"
  done
  q=$(/usr/sbin/postqueue -c "$PF_ETC" -p 2>&1 || true)
  case "$q" in *"queue is empty"*) ;; *) say "warning: Postfix's queue is not empty at the end: $(printf '%s' "$q" | tail -1)" ;; esac
  stop_postfix
fi

ceiling after

# ---------------------------------------------------------------- 4. report
meta=$(printf '{"sendmail_cmd":"%s","messages":%s,"postfix_messages":%s,"size":%s,"sessions":%s,"parallel":%s,"sink_port":%s,"workdir":"%s","cpus":%s,"staged_files_synced":%s,"backend_order":"%s"}' \
  "${SENDMAIL_CMD[*]##*/}" "$N" "$PF_N" "$SIZE" "$SESSIONS" "$PARALLEL" "$SINK_PORT" "$WORKDIR" "$(nproc)" "$([ "$SYNC" = 1 ] && echo true || echo false)" "${backends[*]}")
h report "$RESULTS" "$JSON" "$meta"
