"""
Run every benchmark against every server, side by side, and print one table.

    python bench/run_all.py            # full run (a few minutes)
    python bench/run_all.py --quick    # about a minute
    python bench/run_all.py --smoke    # seconds; what CI runs
    python bench/run_all.py --write-doc   # also update docs/PERFORMANCE.md

Each (scenario, server) pair gets a fresh server process (ours, the seed-design
threaded baseline, twistd words, and with C{--servers ...,inspircd} InspIRCd
3.15, see bench/baselines/inspircd.py) in a temporary directory with a
generated credentials file, on 127.0.0.1, port 0. See bench/loadgen.py for
what is measured and how.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen
import servers

PROFILES = {
    "smoke": {
        "private": {"pairs_per_worker": 2, "window": 8, "warmup": 0.2, "duration": 0.5},
        "pipeline": {"pairs": 4, "messages": 200, "batch": 100},
        "fanout": {"members": 20, "repeats": 3, "warmup": 1},
        "idle": {"levels": [50, 100]},
        "logins": {"n": 100},
    },
    "quick": {
        "private": {"pairs_per_worker": 20, "window": 32, "warmup": 0.5, "duration": 3.0},
        "pipeline": {"pairs": 50, "messages": 4000, "batch": 100},
        "fanout": {"members": 1000, "repeats": 10, "warmup": 2},
        "idle": {"levels": [1000, 5000]},
        "logins": {"n": 2000},
    },
    "full": {
        "private": {"pairs_per_worker": 20, "window": 32, "warmup": 1.0, "duration": 10.0},
        "pipeline": {"pairs": 50, "messages": 4000, "batch": 100},
        "fanout": {"members": 1000, "repeats": 50, "warmup": 3},
        "idle": {"levels": [1000, 5000, 10000]},
        "logins": {"n": 10000},
    },
}

ORDER = ["ours", "ours-irc", "ours-web", "ours-noindex", "ours-runrows", "before", "before-irc", "before-web", "old",
         "seed", "words", "inspircd", "ergo"]
# compared with "ours"; "before-irc" with "ours-irc"
BASELINES = ("before", "old", "seed", "words", "inspircd", "ergo", "ours-noindex", "ours-runrows")
# CI runs these (tests/test_bench_smoke.py): no InspIRCd, which needs apt-get.
DEFAULT_SERVERS = "ours,ours-irc,seed,words"
# Scenarios a kind does not run (its cells read "-"): a page is sent every member list on each
# join, so a 1,000-member group's set-up is quadratic over the web socket.
NOT_RUN = {"ours-web": {"fanout"}, "before-web": {"fanout"}}

# With --repeat, the run kept for each (scenario, server) is the best by this
# measure (the machine is shared: the best run is the least disturbed one).
PRIMARY = {
    "private": lambda r: r["msgs_per_s"],
    # The deep pipeline's figure is its CPU per message (its rate follows the machine).
    "pipeline": lambda r: -r["cpu_us_per_msg"],
    "fanout": lambda r: -r["p50_ms"],
    "idle": lambda r: len(r["levels"]),
    "logins": lambda r: r["logins_per_s"],
}


def _main_thread(r: dict):
    """CPU per message in the server's main thread (chatproto's reactor; the rest is its
    database thread), from results that have it (older ones do not)."""
    share = r.get("server_main_thread_share_pct")
    return None if share is None or r.get("cpu_us_per_msg") is None else r["cpu_us_per_msg"] * share / 100


def rows_for(profile: dict):
    """(label, scenario, getter, unit format, better) for each row of the table."""
    members = profile["fanout"]["members"]
    rows = [
        ("private msgs/s", "private", lambda r: r["msgs_per_s"], "{:,.0f}", "higher"),
        ("private p50 latency ms", "private", lambda r: r["p50_ms"], "{:.2f}", "lower"),
        ("private p99 latency ms", "private", lambda r: r["p99_ms"], "{:.2f}", "lower"),
        ("private server CPU us/msg", "private", lambda r: r["cpu_us_per_msg"], "{:.2f}",
         "lower"),
        ("  of it in the main thread us/msg", "private", _main_thread, "{:.2f}", "lower"),
        ("private server CPU %", "private", lambda r: r["server_cpu_pct"], "{:.0f}", None),
        ("pipeline msgs/s", "pipeline", lambda r: r["msgs_per_s"], "{:,.0f}", "higher"),
        ("pipeline server CPU us/msg", "pipeline", lambda r: r["cpu_us_per_msg"], "{:.2f}",
         "lower"),
        ("  of it in the main thread us/msg", "pipeline", _main_thread, "{:.2f}", "lower"),
        ("pipeline p99 latency ms", "pipeline", lambda r: r["p99_ms"], "{:.1f}", "lower"),
        ("pipeline lost", "pipeline", lambda r: r["lost"], "{:,}", None),
        (f"fan-out {members}: p50 ms", "fanout", lambda r: r["p50_ms"], "{:.2f}", "lower"),
        (f"fan-out {members}: p99 ms", "fanout", lambda r: r["p99_ms"], "{:.2f}", "lower"),
        (f"fan-out {members}: server CPU us/delivery", "fanout",
         lambda r: r["cpu_us_per_delivery"], "{:.2f}", "lower"),
    ]
    for level in profile["idle"]["levels"]:
        rows.append((f"idle RSS KiB/client @{level:,}", "idle",
                     lambda r, lv=level: _idle(r, lv), "{:.2f}", "lower"))
    rows += [
        ("logins/s", "logins", lambda r: r["logins_per_s"], "{:,.0f}", "higher"),
        ("server CPU us/login", "logins", lambda r: r["login_cpu_us_per_login"], "{:.1f}", "lower"),
        ("logouts/s", "logins", lambda r: r["logouts_per_s"], "{:,.0f}", "higher"),
        ("server CPU us/logout", "logins", lambda r: r["logout_cpu_us_per_logout"], "{:.1f}",
         "lower"),
    ]
    return rows


def _idle(result, level):
    entry = result["levels"].get(level) or result["levels"].get(str(level))
    if entry is None:
        return None
    if entry["held"] < level:
        raise ValueError(f"held only {entry['held']:,}")
    return entry["kib_per_client"]


def build_table(results: dict, profile: dict, kinds: list):
    """A list of rows of cells (strings), the first row the header."""
    labels = [servers.SERVERS[k][0] for k in kinds]
    header = ["metric", *labels]
    pairs = [("ours", k) for k in kinds if k in BASELINES] if "ours" in kinds else []
    # Issue 17 compares both front ends with InspIRCd.
    if "ours-irc" in kinds and "before-irc" in kinds:
        pairs.append(("ours-irc", "before-irc"))
    if "ours-irc" in kinds and "inspircd" in kinds:
        pairs.append(("ours-irc", "inspircd"))
    if "ours-irc" in kinds and "ergo" in kinds:
        pairs.append(("ours-irc", "ergo"))
    # Issue 25: the web socket against its own other commit and against ergo.
    if "ours-web" in kinds and "before-web" in kinds:
        pairs.append(("ours-web", "before-web"))
    if "ours-web" in kinds and "ergo" in kinds:
        pairs.append(("ours-web", "ergo"))
    header += [f"{servers.SERVERS[a][0]} vs {servers.SERVERS[b][0]}" for a, b in pairs]
    table = [header]
    for label, scenario, get, fmt, better in rows_for(profile):
        values, cells = {}, [label]
        for kind in kinds:
            result = results.get(kind, {}).get(scenario)
            if result is None:
                cells.append("-")
                continue
            if "error" in result:
                cells.append("error")
                continue
            try:
                value = get(result)
            except (KeyError, ValueError) as e:
                cells.append(str(e) if isinstance(e, ValueError) else "-")
                continue
            values[kind] = value
            cells.append("-" if value is None else fmt.format(value))
        for mine, base in pairs:
            ours, other = values.get(mine), values.get(base)
            if better is None or not ours or not other:
                cells.append("")
            elif better == "higher":
                cells.append(f"{ours / other:.2f}x")
            else:
                cells.append(f"{other / ours:.2f}x")
        table.append(cells)
    return table


def render(table, markdown=False) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                 enumerate(zip(row, widths))]
        if markdown:
            lines.append("| " + " | ".join(cells) + " |")
            if n == 0:
                lines.append("|" + "|".join(
                    "-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
        else:
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def goals(results: dict, profile: dict) -> list:
    """The issue-8 goals, each as (text, measured, met) where they can be checked."""
    ours = results.get("ours", {})

    def get(kind, scenario, key):
        r = results.get(kind, {}).get(scenario)
        return None if not r or "error" in r else r.get(key)

    out = []
    p_ours = get("ours", "private", "msgs_per_s")
    p_words = get("words", "private", "msgs_per_s")
    p_seed = get("seed", "private", "msgs_per_s")
    if p_ours and p_words:
        out.append(("private msgs/s >= 2x twistd words", f"{p_ours / p_words:.2f}x",
                    p_ours >= 2 * p_words))
    if p_ours and p_seed:
        out.append(("private msgs/s >= 3x threaded baseline", f"{p_ours / p_seed:.2f}x",
                    p_ours >= 3 * p_seed))
    p_irc = get("ours-irc", "private", "msgs_per_s")
    if p_irc and p_words:
        out.append(("IRC front end private msgs/s >= 2x twistd words", f"{p_irc / p_words:.2f}x",
                    p_irc >= 2 * p_words))
    c_irc = get("ours-irc", "fanout", "cpu_us_per_delivery")
    c_words = get("words", "fanout", "cpu_us_per_delivery")
    if c_irc and c_words:
        out.append(("IRC front end fan-out CPU/delivery <= 1/2 twistd words",
                    f"{c_words / c_irc:.2f}x", 2 * c_irc <= c_words))
    cpu = get("ours", "private", "cpu_us_per_msg")
    if cpu:
        out.append(("private <= 4 us server CPU/msg while logging", f"{cpu:.2f} us",
                    cpu <= 4))
    cpu = get("ours", "fanout", "cpu_us_per_delivery")
    members = profile["fanout"]["members"]
    if cpu:
        out.append((f"fan-out ({members}) <= 5 us CPU/delivery", f"{cpu:.2f} us", cpu <= 5))
    p99 = get("ours", "fanout", "p99_ms")
    if p99:
        out.append((f"fan-out ({members}) p99 <= 50 ms", f"{p99:.1f} ms", p99 <= 50))
    idle = ours.get("idle")
    if idle and "error" not in idle:
        top = max(profile["idle"]["levels"])
        entry = idle["levels"].get(top) or idle["levels"].get(str(top))
        if entry and entry["held"] >= top:
            out.append((f"{top:,} idle clients <= 2 KiB RSS each",
                        f"{entry['kib_per_client']:.2f} KiB", entry["kib_per_client"] <= 2))
    rate = get("ours", "logins", "logins_per_s")
    if rate:
        out.append((">= 10,000 logins/s", f"{rate:,.0f}/s", rate >= 10000))
    return out


def goals_inspircd(results: dict, profile: dict) -> list:
    """The issue-17 goals: chatproto's cost as a multiple of InspIRCd's, both front ends."""

    def get(kind, scenario, getter):
        r = results.get(kind, {}).get(scenario)
        if not r or "error" in r:
            return None
        try:
            return getter(r)
        except (KeyError, ValueError):
            return None

    top = max(profile["idle"]["levels"])
    members = profile["fanout"]["members"]
    measures = [
        ("server CPU per private message", "private", lambda r: r["cpu_us_per_msg"], 1.5),
        (f"server CPU per fan-out delivery ({members})", "fanout",
         lambda r: r["cpu_us_per_delivery"], 1.1),
        (f"idle RSS per client @{top:,}", "idle", lambda r: _idle(r, top), 0.8),
        ("server CPU per login", "logins", lambda r: r["login_cpu_us_per_login"], 1.0),
    ]
    out = []
    for kind in ("ours", "ours-irc"):
        label = servers.SERVERS[kind][0]
        for what, scenario, getter, limit in measures:
            mine, theirs = get(kind, scenario, getter), get("inspircd", scenario, getter)
            if mine is None or not theirs:
                continue
            out.append((f"{label}: {what} <= {limit}x InspIRCd's", f"{mine / theirs:.2f}x",
                        mine <= limit * theirs))
    return out


def machine() -> dict:
    import twisted

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "kernel": platform.release(),
    }


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_doc(path: str, text: str) -> None:
    """Replace the generated block of C{path} (between the markers), keep the rest."""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Performance\n\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)


def report(results, profile_name, profile, kinds, workers, load=(), repeat=1) -> tuple:
    table = build_table(results, profile, kinds)
    m = machine()
    errors = [(k, s, r["error"]) for k, rs in results.items() for s, r in rs.items()
              if "error" in r]
    checks = goals(results, profile)
    checks17 = goals_inspircd(results, profile)
    text = [render(table), ""]
    if load:
        text.insert(0, f"load average {' -> '.join(f'{x:.1f}' for x in load)}; "
                       f"best of {repeat} run(s) per cell")
    if checks:
        text.append("Goals (issue 8):")
        text += [f"  [{'x' if met else ' '}] {goal}: {value}" for goal, value, met in checks]
    if checks17:
        text.append("Goals (issue 17, ours / InspIRCd):")
        text += [f"  [{'x' if met else ' '}] {goal}: {value}" for goal, value, met in checks17]
    for kind, scenario, error in errors:
        text.append(f"ERROR {kind} {scenario}: {error}")
    md = [
        (f"Measured {m['date']} with `python bench/run_all.py"
         f"{'' if profile_name == 'full' else ' --' + profile_name}"
         f"{'' if repeat == 1 else f' --repeat {repeat}'}` "
         f"({workers} load-generator processes) on {m['nproc']} x {m['cpu']}, "
         f"Linux {m['kernel']}, Python {m['python']}, Twisted {m['twisted']}; "
         f"load average {' -> '.join(f'{x:.1f}' for x in load)} (the machine is shared)."),
        "",
        render(table, markdown=True),
        "",
        ("Ratios are improvement factors: above 1 means ours is better (faster, or less "
         "CPU/latency/memory)."),
    ]
    if checks:
        md += ["", "Goals of issue 8:", ""]
        md += [f"- [{'x' if met else ' '}] {goal}: **{value}**" for goal, value, met in checks]
    if checks17:
        md += ["", "Goals of issue 17 (chatproto's figure / InspIRCd's):", ""]
        md += [f"- [{'x' if met else ' '}] {goal}: **{value}**" for goal, value, met in checks17]
    for kind, scenario, error in errors:
        md.append(f"\nERROR {kind} {scenario}: `{error}`")
    return "\n".join(text), "\n".join(md), bool(errors)


def save_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


async def run_one(reactor, kind, scenario, profile, data_dir, credentials, workers) -> dict:
    """One scenario against a fresh server of kind C{kind}; errors become the result."""
    label = servers.SERVERS[kind][0]
    print(f"[{time.strftime('%H:%M:%S')}] {scenario} / {label} ...", file=sys.stderr,
          flush=True)
    server = pool = None
    try:
        server = await servers.start(reactor, kind, data_dir, credentials)
        pool = loadgen.WorkerPool(reactor, workers)
        target = loadgen.Target(label, server.dialect, server.host, server.port, server.pid)
        result = await loadgen.SCENARIOS[scenario](reactor, target, pool, **profile[scenario])
    except Exception as e:  # noqa: BLE001 - reported in the table, the run goes on
        result = {"error": f"{type(e).__name__}: {e}"}
    finally:
        if pool is not None:
            await pool.stop()
        if server is not None:
            await server.stop(reactor)
    print(f"    {json.dumps(result)[:400]}", file=sys.stderr, flush=True)
    return result


async def run(reactor, args):
    profile_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    profile = json.loads(json.dumps(PROFILES[profile_name]))
    for item in args.set:
        key, _, value = item.partition("=")
        scenario, _, name = key.partition(".")
        profile[scenario][name] = json.loads(value)
    kinds = [k for k in ORDER if k in args.servers.split(",")]
    if "ours" in kinds and not servers.ours_available():
        print("chatproto/server.py not found: skipping 'ours'", file=sys.stderr)
        kinds.remove("ours")
    for kind in list(kinds):
        why = servers.available(kind)
        if why:
            print(f"skipping {kind!r}: {why}", file=sys.stderr)
            kinds.remove(kind)
    scenarios = [s for s in ("private", "pipeline", "fanout", "idle", "logins")
                 if s in args.scenarios.split(",")]
    workers = args.workers
    n_accounts = max(
        2 * profile["private"]["pairs_per_worker"] * workers,
        2 * profile["pipeline"]["pairs"],
        profile["fanout"]["members"] + 1,
        max(profile["idle"]["levels"]),
        profile["logins"]["n"],
    ) + 10
    top = tempfile.mkdtemp(prefix="chatbench-")
    credentials = os.path.join(top, "credentials.txt")
    loadgen.write_credentials(credentials, n_accounts)
    results: dict = {k: {} for k in kinds}
    load = [os.getloadavg()[0]]
    try:
        runs = [(n, s, k) for n in range(args.repeat) for s in scenarios for k in kinds
                if s not in NOT_RUN.get(k, ())]
        for n, scenario, kind in runs:
            data_dir = os.path.join(top, f"{kind}-{scenario}-{n}")
            result = await run_one(reactor, kind, scenario, profile, data_dir, credentials,
                                   workers)
            old = results[kind].get(scenario)
            if old is None or "error" in old or (
                    "error" not in result
                    and PRIMARY[scenario](result) > PRIMARY[scenario](old)):
                results[kind][scenario] = result
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"server directories kept in {top}", file=sys.stderr)
    load.append(os.getloadavg()[0])
    text, md, failed = report(results, profile_name, profile, kinds, workers, load,
                              args.repeat)
    print(text, flush=True)
    if args.json:
        save_json(args.json, {"machine": machine(), "profile": profile_name,
                              "results": results})
    if args.write_doc:
        write_doc(args.doc, md)
        print(f"updated {args.doc}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="seconds-long version (CI)")
    size.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--servers", default=DEFAULT_SERVERS,
                        help="comma-separated subset of ours,ours-irc,ours-web,seed,words,inspircd "
                        "(before, before-irc, before-web: ours at the checkout BENCH_BEFORE_TREE; "
                        "old: ours at a second checkout, BENCH_OLD_TREE) "
                        "(inspircd: Debian's InspIRCd, apt-get installed when missing; "
                        "ergo: built from ERGO_SRC with go, skipped without them)")
    parser.add_argument("--scenarios", default="private,pipeline,fanout,idle,logins")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="load-generator processes (default: one per core)")
    parser.add_argument("--set", action="append", default=[], metavar="SCENARIO.KEY=JSON",
                        help="override a profile value, e.g. --set private.window=64")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run everything N times (interleaved), keep the best run of each")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--write-doc", action="store_true",
                        help="update the generated block of docs/PERFORMANCE.md")
    parser.add_argument("--doc", default=os.path.join(servers.REPO, "docs", "PERFORMANCE.md"))
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories")
    args = parser.parse_args(argv)
    loadgen.raise_nofile()
    return servers.react_main(run, args)


if __name__ == "__main__":
    sys.exit(main())
