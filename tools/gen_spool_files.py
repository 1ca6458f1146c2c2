#!/usr/bin/env python3
"""Writes N message files of about SIZE bytes into DIR (for the spool
benchmarks and tests). Each has a unique recipient rN@example.net and
Message-ID, so duplicates and losses can be counted. Files are written
under a dot-name and renamed, as the pickup directory documentation asks.

usage: gen_spool_files.py DIR N [SIZE]
"""
import os
import sys


def main() -> None:
    out, n = sys.argv[1], int(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
    filler = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n" * (size // 70 + 2))
    for i in range(n):
        head = (
            f"From: Bench Sender <sender@example.com>\n"
            f"To: r{i}@example.net\n"
            f"Subject: benchmark message {i}\n"
            f"Message-ID: <bench.{i}@example.com>\n"
            f"Date: Sat, 28 Nov 2026 04:53:11 +0000\n\n"
        ).encode()
        body = filler[: max(0, size - len(head))]
        tmp = os.path.join(out, f".tmp{i}")
        with open(tmp, "wb") as f:
            f.write(head + body)
        os.rename(tmp, os.path.join(out, f"m{i:07d}.eml"))


if __name__ == "__main__":
    main()
