"""
Forged datagrams at a receiving client during real transfers (issue 12:
"1,000,000 forged datagrams at a receiving client during a real transfer:
the transfer intact, no file written that the server did not announce").

Three processes on loopback: a receiving TransferEndpoint, told of the
transfers as the server would tell it (expect); the presenter (this
process), which sends a file again and again, each time in a new offered
transfer; and a forger, which sends 1,000,000 forged datagrams at the
receiver as fast as it can.  The forger knows what an on-path observer
knows: the receiver's port, the presenter's address and port, every
transfer id.  As root it spoofs the presenter's source port (raw socket),
so that its forgeries pass the address checks and are rejected by their
tag; otherwise they come from its own port.

The mix, in turn: announcements of transfers nobody offered (random ids,
random ports); DATA, ANNOUNCE, HASH and FAIL of the offered transfers with
wrong tags, from the presenter's address; garbage; the old unauthenticated
format.

    python bench/bench_forged.py                # 1,000,000 forged, 100 MiB transfers
    python bench/bench_forged.py --smoke        # 20,000 forged, 4 MiB (a few seconds)
    python bench/bench_forged.py --count 300000 --size 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from chatproto import transfer  # noqa: E402 - after the sys.path line
from chatproto.transfer.names import INDEX_NAME  # noqa: E402
from chatproto.transfer.wire import Keys  # noqa: E402

MiB = 1024 * 1024
PRESENTER = "bench"
FILENAME = "video.bin"


# --- the receiver (a child process) ----------------------------------------------


def current_rss() -> int:
    """KiB resident now (not ru_maxrss: a child forked from a large parent inherits its peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def receiver(directory: str, offers_path: str) -> None:
    """
    A TransferEndpoint told of every offer in C{offers_path}; prints PORT;
    answers C{STATS} with its CPU time and counters; C{FILES} lists its
    directory; ends when its stdin closes.
    """
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    received = []

    class Listener:
        def transfer_received(self, presenter, basename, final_path):
            received.append(final_path)
            print("RECEIVED", final_path, flush=True)

        def transfer_failed(self, direction, peer_name, basename, reason):
            print("FAILED", reason, flush=True)

    endpoint = transfer.TransferEndpoint(directory, Listener(), idle_timeout=10.0)
    endpoint.offer_timeout = 3600  # every offer is made at the start here
    with open(offers_path) as f:
        for tid, secret in json.load(f):
            endpoint.expect(tid, secret, PRESENTER, "127.0.0.1", FILENAME)
    port = transfer.listen_udp(reactor, 0, endpoint, interface="127.0.0.1")

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line):
            if line == b"STATS":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu = usage.ru_utime + usage.ru_stime
                print("STATS", cpu, endpoint.ignored, endpoint.forged, peak[0], flush=True)
                peak[0] = current_rss()
            elif line == b"FILES":
                print("FILES", json.dumps(sorted(os.listdir(directory))), flush=True)

        def connectionLost(self, reason=None):
            reactor.stop()

    peak = [current_rss()]  # the largest RSS sampled (every 10 ms) since the last STATS

    def sample():
        peak[0] = max(peak[0], current_rss())

    from twisted.internet import task

    task.LoopingCall(sample).start(0.01)
    stdio.StandardIO(Commands())
    print("PORT", port.getHost().port, flush=True)
    reactor.run()


# --- the forger (a child process) -------------------------------------------------


def forger(receiver_port: int, presenter_port: int, tids_path: str, count: int) -> None:
    """Send C{count} forged datagrams; print how many and how long it took."""
    with open(tids_path) as f:
        tids = json.load(f)
    rng = random.Random(1)
    wrong = Keys(b"\x5a" * 32, 0, presenter=True)  # a key nobody was given
    header = transfer.HEADER
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        spoofed = True
    except PermissionError:
        raw = None
        spoofed = False
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MiB)
    plain.bind(("127.0.0.1", 0))
    destination = ("127.0.0.1", receiver_port)

    def sealed(kind, tid, body, number):
        message = header.pack(transfer.MAGIC, kind, tid, number) + body
        return message + hashlib.sha256(message).digest()[:16]  # a tag, but not from the key

    current_path = os.path.join(os.path.dirname(tids_path), "current")

    def current_templates():
        """Forgeries of the transfer running now (its id is in the clear in every datagram)."""
        try:
            with open(current_path) as f:
                tid = int(f.read(), 16)
        except (OSError, ValueError):
            return []
        return [
            sealed(transfer.DATA, tid, data_body, 1),
            sealed(transfer.HASH, tid, bytes(32), 1),
            sealed(transfer.FAIL, tid, b"forged failure", 1),
            sealed(transfer.ANNOUNCE, tid, announce_body, 1),
        ]

    announce_body = transfer.ANNOUNCE_BODY.pack(1 << 40, 512, len(PRESENTER), len(FILENAME))
    announce_body += PRESENTER.encode() + FILENAME.encode()
    data_body = struct.pack("!III", 0, 1, 0) + bytes(1024)
    templates = []
    for tid in tids:
        templates += [
            (True, sealed(transfer.DATA, tid, data_body, 1)),
            (True, sealed(transfer.ANNOUNCE, tid, announce_body, 1)),
            (True, sealed(transfer.HASH, tid, bytes(32), 1)),
            (True, sealed(transfer.FAIL, tid, b"forged failure", 1)),
        ]
    others = [
        b"garbage that is long enough to have a header and a tag",
        b"CT\x01" + bytes(60),  # the old, unauthenticated format
    ]
    print("READY", flush=True)
    start = time.monotonic()
    sent = 0
    running = []
    while sent < count:
        if sent % 1024 == 0:
            running = current_templates()
        choice = sent % 6
        if choice < 2 and running:
            datagram = running[sent % len(running)]
            from_presenter = True
        elif choice < 4:
            _, datagram = templates[rng.randrange(len(templates))]
            from_presenter = True
        elif choice == 4:
            datagram = wrong.seal(transfer.ANNOUNCE, announce_body)  # an unoffered transfer
            datagram = datagram[:3] + rng.getrandbits(64).to_bytes(8, "big") + datagram[11:]
            from_presenter = False
        else:
            datagram = others[sent % 2]
            from_presenter = False
        try:
            if spoofed and from_presenter:
                udp = struct.pack("!HHHH", presenter_port, receiver_port, 8 + len(datagram), 0)
                raw.sendto(udp + datagram, ("127.0.0.1", 0))
            else:
                plain.sendto(datagram, destination)
        except (BlockingIOError, OSError):
            continue  # the socket buffer is full: try again
        sent += 1
    seconds = time.monotonic() - start
    print("FORGED", sent, seconds, "spoofed" if spoofed else "own-port", flush=True)


# --- the presenter and the report (this process) ------------------------------------


def spawn(args):
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return child


def expect_line(child, tag, raw=False):
    while True:
        line = child.stdout.readline()
        if not line:
            raise SystemExit(f"a child ended before {tag}")
        fields = line.split()
        if fields and fields[0] == tag:
            return line if raw else fields


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="forged datagrams")
    parser.add_argument("--size", type=float, default=100, help="MiB per transfer (default 100)")
    parser.add_argument("--smoke", action="store_true", help="20,000 forged, 4 MiB")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.role == "receiver":
        receiver(*options.args)
        return 0
    if options.role == "forger":
        port, presenter_port, tids_path, count = options.args
        forger(int(port), int(presenter_port), tids_path, int(count))
        return 0
    if options.smoke:
        options.count, options.size = 20_000, 4
    return run(options)


def run(options) -> int:
    from twisted.internet import defer, reactor, threads

    size = int(options.size * MiB)
    workdir = tempfile.mkdtemp(prefix="bench-forged-")
    inbox = os.path.join(workdir, "inbox")
    os.mkdir(inbox)
    path = os.path.join(workdir, FILENAME)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).digest()
    offers = [(secrets.token_hex(8), secrets.token_hex(32)) for _ in range(200)]
    offers_path = os.path.join(workdir, "offers.json")
    with open(offers_path, "w") as f:
        json.dump(offers, f)
    with open(os.path.join(workdir, "tids.json"), "w") as f:
        json.dump([int(tid, 16) for tid, _secret in offers], f)
    child = spawn(["--role", "receiver", "--args", inbox, offers_path])
    receiver_port = int(expect_line(child, "PORT")[1])
    result = {"baseline": [], "flood": [], "errors": []}

    class Listener:
        def transfer_failed(self, *args):
            pass

    sender = transfer.TransferEndpoint(workdir, Listener(), loss=0.0)
    udp = transfer.listen_udp(reactor, 0, sender, interface="127.0.0.1")
    presenter_port = udp.getHost().port
    pending = list(offers)

    def stats():
        child.stdin.write("STATS\n")
        child.stdin.flush()
        fields = expect_line(child, "STATS")
        return float(fields[1]), int(fields[2]), int(fields[3]), int(fields[4])

    def intact() -> bool:
        with open(os.path.join(inbox, "bench_" + FILENAME), "rb") as f:
            return hashlib.sha256(f.read()).digest() == digest

    @defer.inlineCallbacks
    def one(label):
        tid, secret = pending.pop(0)
        with open(os.path.join(workdir, "current.tmp"), "w") as f:
            f.write(tid)
        os.replace(os.path.join(workdir, "current.tmp"), os.path.join(workdir, "current"))
        start = time.monotonic()
        try:
            yield sender.send_file(path, PRESENTER, ("127.0.0.1", receiver_port), transfer_id=tid, secret=secret)
        except transfer.TransferFailed as e:
            result["errors"].append(f"{label}: {e.reason}")
            return
        seconds = time.monotonic() - start
        yield threads.deferToThread(expect_line, child, "RECEIVED")
        ok = yield threads.deferToThread(intact)
        if not ok:
            result["errors"].append(f"{label}: the received file differs")
        result[label].append(seconds)

    @defer.inlineCallbacks
    def everything():
        try:
            for _ in range(3):
                yield one("baseline")
            # the flood alone: what a forged datagram costs the receiver
            before = stats()
            forger_child = spawn(["--role", "forger", "--args", str(receiver_port), str(presenter_port),
                                  os.path.join(workdir, "tids.json"), str(options.count // 10)])
            yield threads.deferToThread(expect_line, forger_child, "FORGED")
            forger_child.wait()
            yield threads.deferToThread(time.sleep, 0.5)  # let the receiver drain its socket
            after = stats()
            result["alone"] = (after[0] - before[0], after[1] - before[1] + after[2] - before[2])
            # the flood during transfers, one after another until it is over
            before = stats()
            forger_child = spawn(["--role", "forger", "--args", str(receiver_port), str(presenter_port),
                                  os.path.join(workdir, "tids.json"), str(options.count)])
            yield threads.deferToThread(expect_line, forger_child, "READY")
            while True:  # at least one transfer, and more until the flood is over
                yield one("flood")
                if forger_child.poll() is not None or not pending:
                    break
            fields = yield threads.deferToThread(expect_line, forger_child, "FORGED")
            forger_child.wait()
            result["forger"] = (int(fields[1]), float(fields[2]), fields[3])
            yield threads.deferToThread(time.sleep, 0.5)
            after = stats()
            result["during"] = (after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3])
            child.stdin.write("FILES\n")
            child.stdin.flush()
            result["files"] = json.loads(expect_line(child, "FILES", raw=True).split(" ", 1)[1])
        finally:
            reactor.stop()

    reactor.callWhenRunning(everything)
    reactor.run(installSignalHandlers=False)
    child.stdin.close()
    child.wait()
    shutil.rmtree(workdir, ignore_errors=True)
    return report(options, size, result)


def report(options, size, result) -> int:
    def spread(times):
        times = sorted(times)
        return f"{times[0]:.3f} / {times[len(times) // 2]:.3f} / {times[-1]:.3f} s" if times else "none"

    print(f"file {size / MiB:.1f} MiB per transfer, {options.count:,} forged datagrams, loopback")
    print(f"transfers without forgeries (min / median / max): {spread(result['baseline'])}")
    if "alone" in result:
        cpu, handled = result["alone"]
        per = cpu / handled * 1e6 if handled else float("nan")
        print(f"a flood of {options.count // 10:,} alone: the receiver handled {handled:,} "
              f"in {cpu:.3f} s of CPU, {per:.2f} us each")
    if "forger" in result:
        sent, seconds, how = result["forger"]
        cpu, ignored, forged, rss = result["during"]
        print(f"forger: {sent:,} datagrams in {seconds:.2f} s ({sent / seconds:,.0f}/s, {how})")
        print(f"receiver during the flood: {ignored:,} ignored (unknown transfer or address), "
              f"{forged:,} failed authentication; the rest was dropped by the kernel (full socket buffer); "
              f"{cpu:.2f} s of CPU; RSS at most {rss / 1024:.0f} MiB (sampled every 10 ms)")
        print(f"transfers during the flood: {len(result['flood'])}, all intact: {not result['errors']}; "
              f"(min / median / max) {spread(result['flood'])}")
    files = result.get("files", [])
    print(f"files in the receiver's directory: {files}")
    unexpected = [name for name in files if name not in ("bench_" + FILENAME, INDEX_NAME)]
    for error in result["errors"]:
        print("ERROR", error)
    if unexpected:
        print("ERROR unexpected files:", unexpected)
    return 1 if result["errors"] or unexpected or not result["flood"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
