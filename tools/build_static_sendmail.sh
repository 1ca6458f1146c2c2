#!/usr/bin/env bash
# Builds ringmail-sendmail as a static musl binary and prints its path.
#
# Why: on a virtual machine every process start of a glibc program pays
# for glibc's CPU and cache detection (dozens of CPUID instructions, each
# a trap to the hypervisor), about 1 ms of CPU here; a static musl binary
# starts in about 0.1 ms (docs/BENCHMARKS.md, "The sendmail path"). Where
# programs run one sendmail per message (PHP's mail(), cron, scripts), that
# is most of the cost of handing a message over. Install the result as
# /usr/sbin/sendmail, with the full `ringmail` binary beside it (modes
# other than queueing a message are handed to it).
#
# Needs the Rust musl target (rustup) and musl-gcc (Debian's musl-tools,
# for ring's C code); installs both when missing (apt-get needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v musl-gcc >/dev/null; then
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools >&2
fi
CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo build --release --target "$target" --bin ringmail-sendmail >&2
echo "$PWD/target/$target/release/ringmail-sendmail"
