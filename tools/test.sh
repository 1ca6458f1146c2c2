#!/usr/bin/env bash
# The project's test command (README): installs the real peers the tests
# talk to, then runs every test. Safe to run again: it installs only what
# is missing. Needs root for apt-get on a fresh machine (as CI is).
#
# Peers: Postfix's smtp-sink/smtp-source, swaks and pflogsumm (Debian), Python 3
# with dkimpy (PyPI),
# chattr and mkfs.ext4 (e2fsprogs), curl and headless Chromium (the HTTP
# server's tests, tests/http_api.rs), Prometheus (tests/metrics.rs), tmux (tests/top.rs), Haraka (npm, into tests/haraka/).
# Every test talks to loopback and temporary directories only.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

need_apt=()
command -v smtp-sink >/dev/null || need_apt+=(postfix)
command -v swaks >/dev/null || need_apt+=(swaks)
command -v python3 >/dev/null || need_apt+=(python3)
perl -MNet::SSLeay -e1 2>/dev/null || need_apt+=(libnet-ssleay-perl)
{ command -v chattr >/dev/null && command -v mkfs.ext4 >/dev/null; } || need_apt+=(e2fsprogs)
command -v pflogsumm >/dev/null || need_apt+=(pflogsumm)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v curl >/dev/null || need_apt+=(curl)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v tmux >/dev/null || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  # "No configuration" keeps the package from starting a system Postfix.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
fi

# dkimpy (with PyNaCl for Ed25519), the independent DKIM verifier of
# tests/dkim.rs, for the python3 the tests run.
if ! python3 -c 'import dkim, nacl' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check dkimpy pynacl \
    || python3 -m pip install --quiet --break-system-packages dkimpy pynacl
fi

# Haraka, a strict real receiver (tests/haraka.rs). Pinned by
# tests/haraka/package-lock.json.
if [ ! -x tests/haraka/node_modules/.bin/haraka ]; then
  npm ci --prefix tests/haraka --no-audit --no-fund --loglevel=error
fi
export RINGMAIL_REQUIRE_HARAKA=1
export RINGMAIL_REQUIRE_CHROMIUM=1

# One test more than cores: many tests wait on timeouts and peers (1.1 of
# 2 cores busy with one per core), so the run takes 313 s instead of 443
# here. NEXTEST_TEST_THREADS set by the caller wins.
export NEXTEST_TEST_THREADS=${NEXTEST_TEST_THREADS:-$(($(nproc) + 1))}
cargo nextest run --workspace --no-fail-fast "$@"
