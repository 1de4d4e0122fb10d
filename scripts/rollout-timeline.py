#!/usr/bin/env python3
"""Lays a rollout bench run out deploy by deploy: berth's log, Caddy's log, the engine's
events and the slow requests, each in milliseconds after its deploy's manifest write.

    start=$(date +%s)
    BENCH_LOG=1 BENCH_ROUNDS=1 cargo bench --bench rollout 2> bench.err
    docker events --since "$start" --until "$(date +%s)" \
      --format '{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}}' > events.txt
    scripts/rollout-timeline.py bench.err events.txt

Slow requests that began together are printed on one `SLOW` line as `began:took` pairs.
"""

import datetime
import json
import re
import sys

NOISY = ("received request", "admin endpoint started", "automatic HTTPS",
         "server running", "certificate maintenance")


def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def bench_lines(lines):
    """The writes, and every other timed line of the bench's stderr."""
    writes, items = [], []
    for line in lines:
        if line.startswith("WRITE "):
            writes.append(stamp(line.split()[1]))
        elif line.startswith("SLOW berth "):
            at, took = line.split()[3:5]  # SLOW berth deploys <at> <took> ms
            items.append((stamp(at), "slow " + took))
        elif line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not any(n in entry.get("msg", "") for n in NOISY):
                items.append((entry["ts"], "caddy: " + entry.get("msg", "")[:80]))
        else:
            m = re.match(r"(\S+Z)\s+\w+\s+\S+: (.*)", line)
            if m:
                items.append((stamp(m.group(1)), "berth: " + m.group(2)[:120]))
    return writes, items


def engine_lines(lines):
    for line in lines:
        nanos, *what = line.split()
        yield int(nanos) / 1e9, "docker: " + " ".join(what)


def main(bench_err, events):
    writes, items = bench_lines(open(bench_err).read().splitlines())
    items += engine_lines(open(events).read().splitlines())
    items.sort()
    for i, write in enumerate(writes):
        end = writes[i + 1] if i + 1 < len(writes) else write + 5
        print(f"=== deploy {i + 1}")
        slow = []
        for at, what in items:
            if not write - 0.05 <= at < end:
                continue
            ms = (at - write) * 1000
            if what.startswith("slow "):
                slow.append(f"{ms:.0f}:{what.split()[1]}")
                continue
            if slow:
                print("        SLOW " + " ".join(slow))
                slow = []
            print(f"{ms:7.0f} {what}")
        if slow:
            print("        SLOW " + " ".join(slow))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
