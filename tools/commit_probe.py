#!/usr/bin/env python3
"""What a small group commit costs on a file system, the way queue segments
are written: a 64 MiB file reserved with fallocate, then ROUNDS x (pwrite of
SIZE bytes after the last, fdatasync), once into the reserved (unwritten)
space as it is and once with zeros written a MiB ahead of the data, as
`Segment::zero_ahead` does (see docs/ARCHITECTURE.md). Prints wall time,
CPU time and latency percentiles per commit for each, alternating.

    tools/commit_probe.py [--dir /var/tmp] [--rounds 3000] [--size 6144] [--repeat 3]

Writes and removes one file in --dir; touches nothing else.
"""

import argparse
import os
import resource
import time

SEGMENT = 64 << 20
CHUNK = 1 << 20
LEAD = 256 << 10


def run(directory, mode, rounds, size):
    path = os.path.join(directory, f"commit_probe.{os.getpid()}.{mode}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, SEGMENT)
        os.fdatasync(fd)
        data = b"x" * size
        zeros = b"\0" * CHUNK
        zeroed = 4096
        offset = 4096
        latencies = []
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        for _ in range(rounds):
            began = time.perf_counter()
            os.pwrite(fd, data, offset)
            offset += size
            if mode == "zeroed-ahead" and offset + LEAD > zeroed and zeroed < SEGMENT:
                zeroed = max(zeroed, offset)
                os.pwrite(fd, zeros[: min(CHUNK, SEGMENT - zeroed)], zeroed)
                zeroed += CHUNK
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - began)
        wall = time.perf_counter() - start
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    latencies.sort()
    us = 1e6
    print(
        f"{mode:13s} {us * wall / rounds:7.1f} us/commit wall, {us * cpu / rounds:6.1f} us CPU, "
        f"p50 {us * latencies[rounds // 2]:.0f} p99 {us * latencies[rounds * 99 // 100]:.0f} "
        f"max {us * latencies[-1]:.0f} us"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--size", type=int, default=6144)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.size * args.rounds + 4096 + CHUNK > SEGMENT:
        parser.error("--size x --rounds does not fit in the 64 MiB file")
    for _ in range(args.repeat):
        for mode in ("fallocate", "zeroed-ahead"):
            run(args.dir, mode, args.rounds, args.size)


if __name__ == "__main__":
    main()
