# BENCHMARK BASELINE -- NOT PART OF CHATPROTO, NEVER SHIPPED.
"""
InspIRCd 3.15 (Debian's C{inspircd} package) as a baseline for bench/run_all.py
(issue 17): a production C++ IRC server, driven over IRC by the same load
generator as twistd words.

    python bench/baselines/inspircd.py --dir SCRATCH [--interface 127.0.0.1] [--port 0]

When the binary is missing it runs C{apt-get update} and C{apt-get install -y
inspircd} first (benchmark time only: the tests never start InspIRCd). It
writes C{inspircd.conf} into SCRATCH with flood control off and the settings
that make it comparable (docs/PERFORMANCE.md, "The servers"; a free port is picked
when C{--port} is 0), starts C{inspircd --runasroot --nofork --nopid --config
FILE} as a child, and once the port accepts connections prints

    Server listening on ADDR:PORT (inspircd pid N)

N is the pid whose CPU time and RSS the benchmark measures (InspIRCd itself,
not this wrapper). SIGTERM/SIGINT are passed on to InspIRCd; if this wrapper
dies, the kernel kills InspIRCd too (PR_SET_PDEATHSIG). Nothing is written
outside SCRATCH.
"""

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

CANDIDATES = ("/usr/sbin/inspircd", "/usr/bin/inspircd")

# Flood control off and buffers large: the load generator pipelines thousands of
# lines. threshold above 4000000 wraps around in 3.15; with the shipped
# netbuffersize the edge-triggered reads stall a pipelining client for up to 1 s.
# pingfreq/timeout long: idle bench clients never answer PING.
CONFIG = """\
<server name="bench.inspircd" description="chatproto benchmark baseline" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="{interface}" port="{port}" type="clients">
<connect name="bench"
         allow="*"
         timeout="600"
         pingfreq="86400"
         threshold="4000000"
         commandrate="1000000000"
         fakelag="no"
         hardsendq="1073741824"
         softsendq="67108864"
         recvq="67108864"
         localmax="100000"
         globalmax="100000"
         limit="100000"
         maxchans="100"
         resolvehostnames="no"
         useident="no">
<performance netbuffersize="65534" softlimit="19000" somaxconn="4096" quietbursts="yes">
<files motd="{motd}">
<options prefixquit="Quit: " syntaxhints="no">
<security maxtargets="20">
"""


def find_binary():
    found = shutil.which("inspircd")
    if found:
        return found
    return next((p for p in CANDIDATES if os.access(p, os.X_OK)), None)


def install() -> str:
    """apt-get update + install inspircd (output to stderr); the binary's path."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("inspircd not found: apt-get install -y inspircd", file=sys.stderr, flush=True)
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "inspircd"]):
        try:
            subprocess.run(argv, check=True, env=env, stdout=sys.stderr, stderr=sys.stderr)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"cannot install inspircd ({' '.join(argv)}): {e}")
    binary = find_binary()
    if binary is None:
        sys.exit("apt-get installed inspircd but no inspircd binary was found")
    return binary


def free_port(interface: str) -> int:
    with socket.socket() as s:
        s.bind((interface, 0))
        return s.getsockname()[1]


def write_config(directory: str, interface: str, port: int) -> str:
    os.makedirs(directory, exist_ok=True)
    motd = os.path.join(directory, "inspircd.motd")
    with open(motd, "w", encoding="utf-8") as f:
        f.write("chatproto benchmark baseline\n")
    path = os.path.join(directory, "inspircd.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(interface=interface, port=port, motd=motd))
    return path


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _relay(stream):
    for line in iter(stream.readline, b""):
        sys.stderr.buffer.write(line)
        sys.stderr.flush()


def wait_listening(child, interface: str, port: int, timeout: float) -> bool:
    """True once C{interface:port} accepts a connection (False if the child exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            socket.create_connection((interface, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="InspIRCd as a benchmark baseline")
    parser.add_argument("--dir", required=True, help="scratch directory (config, motd)")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free one")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    binary = find_binary() or install()
    port = args.port or free_port(args.interface)
    config = write_config(args.dir, args.interface, port)
    return serve([binary, "--runasroot", "--nofork", "--nopid", "--config", config], args.dir,
                 args.interface, port, args.timeout, "inspircd")


def serve(argv, cwd: str, interface: str, port: int, timeout: float, name: str) -> int:
    """
    Run the server C{argv} as a child (killed with this process), its output
    relayed to stderr and signals passed on; once C{interface:port} accepts,
    print the ready line naming the child's pid; return its exit status.
    """
    child = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    threading.Thread(target=_relay, args=(child.stdout,), daemon=True).start()

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if not wait_listening(child, interface, port, timeout):
        if child.poll() is None:
            child.kill()
        child.wait()
        print(f"{name} did not listen on {interface}:{port} "
              f"(exit status {child.returncode})", file=sys.stderr)
        return 1
    print(f"Server listening on {interface}:{port} ({name} pid {child.pid})", flush=True)
    return child.wait()

if __name__ == "__main__":
    sys.exit(main())
