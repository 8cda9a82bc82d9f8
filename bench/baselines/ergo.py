# BENCHMARK BASELINE -- NOT PART OF CHATPROTO, NEVER SHIPPED.
"""
ergo 2.11.1 (a production IRC server in Go) as a baseline for bench/run_all.py
(issue 25), driven over IRC by the same load generator as twistd words and
InspIRCd.

    python bench/baselines/ergo.py --dir SCRATCH [--interface 127.0.0.1] [--port 0]
    python bench/baselines/ergo.py --check      # exit 0 when ergo can be built/started

Neither ergo's sources nor a binary built from them are part of this
repository. The wrapper needs a copy of ergo's source tree at tag v2.11.1
(with its C{vendor/} directory) named by C{ERGO_SRC} (default
C{/tmp/ergo-src}), e.g.

    git -C ERGO_REPO archive v2.11.1 | tar x -C /tmp/ergo-src

and Go (Debian's C{golang-go}; 1.19 builds it). It builds C{ERGO_SRC/ergo}
once (C{GOFLAGS=-mod=vendor go build}: the vendored modules, no network),
writes C{SCRATCH/ircd.yaml} from ergo's own C{default.yaml} with these changes
(the rest as ergo ships it, history in memory included):

- one plain listener on C{INTERFACE:PORT} (a free port when C{--port} is 0),
  no TLS listener;
- C{fakelag} off, C{ip-limits} C{count} and C{throttle} off (the generator
  opens hundreds of connections from one address and pipelines thousands of
  lines);
- C{max-sendq} 64M (a receiver thousands of messages behind is not dropped);
- the MOTD read from the source tree, translations off;

runs C{ergo initdb} and C{ergo run --conf SCRATCH/ircd.yaml} in SCRATCH as its
child and, once the port accepts connections, prints

    Server listening on ADDR:PORT (ergo pid N)

N is the pid the benchmark measures (ergo itself, not this wrapper). When Go or
the sources are missing, C{--check} exits 1 and says why (bench/run_all.py then
skips ergo). SIGTERM/SIGINT are passed on; if this wrapper dies, the kernel
kills ergo too. Nothing is written outside SCRATCH and C{ERGO_SRC}.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

# The process plumbing is InspIRCd's wrapper's (this directory is on sys.path when run).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inspircd import free_port, serve  # noqa: E402

VERSION = "2.11.1"
DEFAULT_SRC = "/tmp/ergo-src"


def source_dir() -> str:
    return os.environ.get("ERGO_SRC") or DEFAULT_SRC


def missing() -> str:
    """Why ergo cannot be started here, or "" when it can."""
    src = source_dir()
    if not os.path.exists(os.path.join(src, "ergo.go")):
        return f"no ergo source tree in {src} (set ERGO_SRC)"
    if not os.path.isdir(os.path.join(src, "vendor")):
        return f"{src} has no vendor/ directory"
    if not os.path.exists(os.path.join(src, "ergo")) and not shutil.which("go"):
        return "no go compiler (apt-get install golang-go)"
    return ""


def build() -> str:
    """C{ERGO_SRC/ergo}, built once from the vendored sources."""
    src = source_dir()
    binary = os.path.join(src, "ergo")
    if os.path.exists(binary):
        return binary
    env = dict(os.environ, GOFLAGS="-mod=vendor", CGO_ENABLED="0")
    env.setdefault("GOCACHE", os.path.join(src, ".gocache"))
    print(f"building ergo in {src}", file=sys.stderr, flush=True)
    subprocess.run(["go", "build", "-o", binary, "."], cwd=src, env=env, check=True,
                   stdout=sys.stderr, stderr=sys.stderr)
    return binary


def _replace_first(lines, start, pattern, new, stop_indent=None):
    """Replace the first line after C{start} matching C{pattern} (a regex) by C{new}."""
    for i in range(start + 1, len(lines)):
        if stop_indent is not None and lines[i].strip() and not lines[i].lstrip().startswith("#"):
            if len(lines[i]) - len(lines[i].lstrip()) <= stop_indent:
                break
        if re.match(pattern, lines[i]):
            lines[i] = new
            return
    raise ValueError(f"ergo's default.yaml: {pattern!r} not found after line {start + 1}")


def _index(lines, exact):
    try:
        return lines.index(exact)
    except ValueError:
        raise ValueError(f"ergo's default.yaml has no line {exact!r}") from None


def write_config(directory: str, interface: str, port: int) -> str:
    """SCRATCH/ircd.yaml: ergo's default.yaml with the benchmark's changes (see above)."""
    src = source_dir()
    with open(os.path.join(src, "default.yaml"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    # The listeners: every entry replaced by one plain loopback listener.
    start = _index(lines, "    listeners:")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("        ")
                                or lines[end].lstrip().startswith("#")):
        end += 1
    lines[start + 1:end] = [f'        "{interface}:{port}":', ""]
    _replace_first(lines, _index(lines, "    ip-limits:"), r"\s+count: ", "        count: false")
    _replace_first(lines, _index(lines, "    ip-limits:"), r"\s+throttle: ",
                   "        throttle: false")
    _replace_first(lines, 0, r"    max-sendq: ", "    max-sendq: 64M")
    _replace_first(lines, _index(lines, "fakelag:"), r"    enabled: ", "    enabled: false")
    _replace_first(lines, 0, r"    motd: ", f"    motd: {os.path.join(src, 'ergo.motd')}")
    _replace_first(lines, _index(lines, "languages:"), r"    enabled: ", "    enabled: false")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "ircd.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="ergo as a benchmark baseline")
    parser.add_argument("--dir", help="scratch directory (config, database)")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free one")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--check", action="store_true",
                        help="exit 0 when Go and ergo's sources are at hand")
    args = parser.parse_args(argv)
    why = missing()
    if args.check or why:
        if why:
            print(f"ergo unavailable: {why}", file=sys.stderr)
        return 1 if why else 0
    if not args.dir:
        parser.error("--dir is required")
    binary = build()
    port = args.port or free_port(args.interface)
    config = write_config(args.dir, args.interface, port)
    subprocess.run([binary, "initdb", "--conf", config, "--quiet"], cwd=args.dir, check=True,
                   stdout=sys.stderr, stderr=sys.stderr)
    return serve([binary, "run", "--conf", config], args.dir, args.interface, port, args.timeout,
                 "ergo")

if __name__ == "__main__":
    sys.exit(main())
