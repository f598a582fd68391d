#!/usr/bin/env python3
"""A/B comparison of two builds of the benchmarks, interleaved in one run.

    bench/ab.py OLD_RELEASE_DIR NEW_RELEASE_DIR [--rounds N] [BENCH ...]

Each directory is a `target/release` holding the `flotilla` binary and the benchmark
binaries (build both with `cargo build --release -p flotilla -p flotilla-bench`, the
old one from a worktree of the old commit with its own CARGO_TARGET_DIR). Every round
runs each benchmark once per build, alternating which build goes first, so the
machine's drift (10-30 % over tens of seconds here) falls on both alike. Prints each
figure's median per build and the ratio new/old, with "better"/"worse" by the
figure's direction. Outputs are kept under /tmp/flotilla-ab/ for inspection.
"""

import os
import re
import statistics
import subprocess
import sys

# name -> (arguments, [(figure, regex with one number group and an optional unit, higher is better)])
NUMBER = r"([0-9][0-9.]*)\s*([kM]?)"
BENCHES = {
    "node": (
        [],
        [
            ("startup p50 (ms)", r"ready\s+p50 ([0-9.]+)(m?s)", False),
            ("idle RSS (MiB)", r"idle node RSS\s+([0-9.]+)() MiB", False),
        ],
    ),
    "bus": (
        ["--quick"],
        [
            ("batched publish (msg/s)", r"batched publish\s+" + NUMBER, True),
            ("64 publishers (msg/s)", r"64 publishers\s+" + NUMBER, True),
            ("consume + ack (msg/s)", r"consume \+ ack\s+" + NUMBER, True),
        ],
    ),
    "reactor_rules": (
        [],
        [("20-rule tree (msg/s)", r"reactor alone:\s+" + NUMBER + r" messages/s", True)],
    ),
    "reactor_pipeline": (
        [],
        [("publish → reactor → consumer (msg/s)", r"consumer:\s+" + NUMBER + r" msg/s", True)],
    ),
    "dispatch_pipeline": (
        [],
        [
            ("whole pipeline (changes/s)", r"s: " + NUMBER + r" changes/s \(target", True),
            ("Redis delivery (LPUSH/s)", r"s: " + NUMBER + r" LPUSH/s", True),
        ],
    ),
    "dispatch_match": (
        [],
        [
            ("matching, 100,000 definitions (ns/change)", r"match, 100000 definitions: [^(]*\(([0-9.]+)() ns/change", False),
            ("parse + match + format (changes/s)", r"pipeline parse\+match\+format [^:]*: " + NUMBER + r"changes/s", True),
        ],
    ),
    "irc_fleet": (
        ["connections", "2000"],
        [("RSS per bot connection (KiB)", r"([0-9.]+)() KiB per connection", False)],
    ),
    "irc_logging": (
        ["300000", "10000"],
        [
            ("SQLite logging (lines/s)", r"SQLite\s+logger \(bus → store\)\s+" + NUMBER, True),
            ("Postgres logging (lines/s)", r"Postgres\s+logger \(bus → store\)\s+" + NUMBER, True),
        ],
    ),
}


def value(number, unit):
    scale = {"k": 1e3, "M": 1e6, "": 1.0, "ms": 1.0, "s": 1e3}[unit]
    return float(number) * scale


def run(directory, bench, args, out_dir, tag, round_no):
    binary = os.path.join(directory, bench)
    path = os.path.join(out_dir, f"{bench}.{tag}.{round_no}.txt")
    with open(path, "w") as out:
        subprocess.run([binary, *args], stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False)
    with open(path) as f:
        return f.read()


def main():
    argv = sys.argv[1:]
    rounds = 3
    if "--rounds" in argv:
        i = argv.index("--rounds")
        rounds = int(argv[i + 1])
        del argv[i : i + 2]
    if len(argv) < 2:
        sys.exit(__doc__)
    old, new, *names = argv
    names = names or list(BENCHES)
    out_dir = "/tmp/flotilla-ab"
    os.makedirs(out_dir, exist_ok=True)
    samples = {}  # (bench, figure, tag) -> [values]
    for round_no in range(rounds):
        order = [("old", old), ("new", new)] if round_no % 2 == 0 else [("new", new), ("old", old)]
        for bench in names:
            args, figures = BENCHES[bench]
            for tag, directory in order:
                text = run(directory, bench, args, out_dir, tag, round_no)
                for figure, pattern, _ in figures:
                    match = re.search(pattern, text)
                    if match:
                        samples.setdefault((bench, figure, tag), []).append(value(*match.groups()))
                    else:
                        print(f"  {bench} ({tag}, round {round_no}): no '{figure}' in its output", file=sys.stderr)
            print(f"round {round_no + 1}/{rounds}: {bench} done", file=sys.stderr)
    print(f"{'benchmark':<18} {'figure':<38} {'old (median)':>14} {'new (median)':>14} {'new/old':>8}")
    for bench in names:
        for figure, _, higher_is_better in BENCHES[bench][1]:
            a = samples.get((bench, figure, "old"))
            b = samples.get((bench, figure, "new"))
            if not a or not b:
                print(f"{bench:<18} {figure:<38} {'—':>14} {'—':>14}")
                continue
            ma, mb = statistics.median(a), statistics.median(b)
            ratio = mb / ma if ma else float("inf")
            better = (ratio >= 1) == higher_is_better
            verdict = "same" if abs(ratio - 1) < 0.05 else ("better" if better else "worse")
            print(f"{bench:<18} {figure:<38} {ma:>14,.1f} {mb:>14,.1f} {ratio:>8.2f}  {verdict}  (n={len(a)}/{len(b)})")


if __name__ == "__main__":
    main()
