"""
Profile a server under one benchmark load with py-spy and print where its CPU
goes (self and inclusive share per function).

    pip install py-spy
    python bench/profile_server.py                       # ours, private messages
    python bench/profile_server.py --scenario fanout
    python bench/profile_server.py --scenario logins --server ours-irc --delay 8 --duration 10
    python bench/profile_server.py --server ours-web --scenario pipeline --cprofile

With C{--cprofile} the server runs under cProfile for the whole load
instead (deterministic, with call counts, slower): py-spy's nonblocking
samples of a busy reactor can come out truncated (seen with the web socket's
pipeline).

The raw collapsed stacks are kept (C{--out}, default bench/results/) for
flame graphs. py-spy's sampling costs the server some CPU, so the rates
printed here are lower than run_all.py's.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen
import servers
from twisted.internet import defer, task, utils

LOADS = {
    "private": {"pairs_per_worker": 20, "window": 32, "warmup": 2.0, "duration": 12.0},
    "fanout": {"members": 1000, "repeats": 600, "warmup": 5},
    # Issue 25's deep pipeline, longer (20,000 per sender) so that sampling sees its middle.
    "pipeline": {"pairs": 50, "messages": 20000, "batch": 100, "timeout": 300},
    # Connecting 10,000 sockets takes a few seconds first: use --delay 8 or so.
    "logins": {"n": 10000},
}


def summarize(path: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function of a py-spy raw file."""
    own, incl, total = Counter(), Counter(), 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            n = int(n)
            total += n
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                incl[frame] += n
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * n / total:6.1f}  {f}" for f, n in own.most_common(top)]
    out += ["", "incl %  function"]
    out += [f"{100 * n / total:6.1f}  {f}" for f, n in incl.most_common(top + 15)]
    return "\n".join(out)


async def run(reactor, args):
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    top = tempfile.mkdtemp(prefix="chatprofile-")
    credentials = os.path.join(top, "credentials.txt")
    load = dict(LOADS[args.scenario])
    loadgen.write_credentials(credentials, max(3000, load.get("n", 0) + 10))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if args.cprofile:
        return await run_cprofile(reactor, args, load, top, credentials)
    server = await servers.start(reactor, args.server, os.path.join(top, "data"), credentials)
    pool = loadgen.WorkerPool(reactor, args.workers)
    try:
        target = loadgen.Target(args.server, server.dialect, server.host, server.port,
                                server.pid)
        work = defer.ensureDeferred(
            loadgen.SCENARIOS[args.scenario](reactor, target, pool, **load))
        await task.deferLater(reactor, args.delay, lambda: None)
        _out, err, code = await utils.getProcessOutputAndValue(
            pyspy, ["record", "-p", str(server.pid), "-d", str(args.duration), "-r", "200",
                    "-f", "raw", "-o", args.out, "--nonblocking",
                    *(["--threads"] if args.threads else [])], env=os.environ)
        result = await work
    finally:
        await pool.stop()
        await server.stop(reactor)
        shutil.rmtree(top, ignore_errors=True)
    if code != 0:
        print(err.decode(errors="replace"), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    print(summarize(args.out))
    print(f"\nraw stacks: {args.out}")
    return 0


async def run_cprofile(reactor, args, load, top, credentials) -> int:
    """The whole load with the server under cProfile; its stats once it has stopped."""
    import pstats

    out = os.path.splitext(args.out)[0] + ".pstats"
    if "messages" in load:  # the whole load is profiled, not a window of it: run's size will do
        load["messages"] = 4000
    server = await servers.start(reactor, args.server, os.path.join(top, "data"), credentials,
                                 profile_to=out)
    pool = loadgen.WorkerPool(reactor, args.workers)
    try:
        target = loadgen.Target(args.server, server.dialect, server.host, server.port,
                                server.pid)
        result = await loadgen.SCENARIOS[args.scenario](reactor, target, pool, **load)
    finally:
        await pool.stop()
        await server.stop(reactor)  # (SIGTERM: the server stops cleanly, cProfile writes)
        shutil.rmtree(top, ignore_errors=True)
    print(json.dumps(result, indent=2))
    stats = pstats.Stats(out)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(f"cProfile stats: {out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="py-spy profile of a server under load")
    parser.add_argument("--server", default="ours", choices=sorted(servers.SERVERS))
    parser.add_argument("--scenario", default="private", choices=sorted(LOADS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--delay", type=float, default=4.0,
                        help="seconds of load before sampling starts (logins, warm-up)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of sampling")
    parser.add_argument("--threads", action="store_true",
                        help="stacks per thread (the SQLite worker apart from the reactor)")
    parser.add_argument("--cprofile", action="store_true",
                        help="run the server under cProfile for the whole load instead of py-spy")
    parser.add_argument("--top", type=int, default=40, help="functions listed (--cprofile)")
    parser.add_argument("--out", default=os.path.join(servers.BENCH, "results",
                                                      "profile-stacks.txt"))
    args = parser.parse_args(argv)
    loadgen.raise_nofile()
    return servers.react_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
