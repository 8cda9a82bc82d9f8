"""
Benchmark of the p2p file transfer (chatproto.transfer) over loopback.

Two real endpoints in two processes (this one presents, a child process
receives), next to a raw UDP blast of the same bytes with the same datagram
size measured in the same run, which is the physical limit of the machine:

    python bench/bench_transfer.py                 # 100 MiB, lossless and 5% loss
    python bench/bench_transfer.py --smoke         # 4 MiB, a few seconds (CI)
    python bench/bench_transfer.py --size 20 --loss 0.1 --chunk-size 16384
    python bench/bench_transfer.py --profile       # cProfile both ends

Rows:
- raw UDP blast: a blocking socket sends the file's chunks as fast as it can
  (read with preadv); the receiver only counts them (recv_into one buffer).
  Time from the first send to the last datagram received.
  It does count bytes received by a receiver process (not just sent), over
  the time until the last one arrived; but it is unpaced, so some runs lose a
  share (the "delivered" column), and its receiver does nothing with the data.
- raw UDP copy into a file: the same, the receiver also pwrites each datagram
  into a file: what an unverified, unreliable copy costs. It usually loses a
  good share of the blast (the receiver cannot keep up without flow control).
- one SHA-256 pass, one BLAKE3 pass: hash the file once (page cache, one
  core). Both ends must make one with the transfer's hash (BLAKE3 unless
  --hash sha256); overlapped on two cores a verified transfer takes at least
  that.
- verification floor, serial: no network, one process: hash the whole file,
  then write every chunk to a new file and hash it (the transfer's hash). It was the floor when the
  presenter hashed before announcing and the receiver hashed inline; the
  pipelined transfer now beats it (the presenter hashes while sending, the
  receiver's worker thread writes and hashes while its reactor reads).
- chatproto: TransferEndpoint.send_file to its Deferred firing (hashing,
  announcing, sending, acknowledging, verifying, renaming), then the received
  file is compared byte for byte (outside the timing).
- chatproto, N% loss: both endpoints drop N% of the datagrams they send.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from chatproto import transfer  # noqa: E402 - after the sys.path line

MiB = 1024 * 1024


def apply_tuning() -> None:
    """BENCH_TRANSFER_TUNE="ACK_EVERY=16,INITIAL_WINDOW=32" overrides constants (experiments)."""
    for item in filter(None, os.environ.get("BENCH_TRANSFER_TUNE", "").split(",")):
        name, value = item.split("=")
        modules = [m for m in vars(transfer).values() if getattr(m, "__name__", "").startswith("chatproto.transfer.")]
        owners = [m for m in modules if hasattr(m, name)]
        if not owners:
            raise SystemExit(f"BENCH_TRANSFER_TUNE: no constant {name} in chatproto.transfer")
        for module in owners:  # every module that imported it has its own binding
            setattr(module, name, type(getattr(module, name))(value))


apply_tuning()
SOCKET_BUFFER = 4 * MiB


def listen(reactor, port, endpoint, interface):
    """The endpoint's UDP port: chatproto.transfer.listen_udp, or listenUDP in trees before it."""
    if hasattr(transfer, "listen_udp"):
        return transfer.listen_udp(reactor, port, endpoint, interface=interface)
    return reactor.listenUDP(port, endpoint, interface=interface, maxPacketSize=65536)


# --- the child process -------------------------------------------------------


def raw_receiver(expected: int, directory: str | None = None) -> None:
    """
    Count datagrams until all came or 1 s of silence; with C{directory}, also
    write each one into a new file there, at its place in arrival order.
    """
    out = None
    if directory:
        out = os.open(os.path.join(directory, "raw.out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.bind(("127.0.0.1", 0))
    print("PORT", sock.getsockname()[1], flush=True)
    buf = bytearray(65536)
    got = 0
    count = 0
    first = last = None
    sock.settimeout(None)
    while got < expected:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            break
        if first is None:
            first = time.monotonic()
            cpu = time.process_time()
            sock.settimeout(1.0)
        if out is not None:
            os.pwrite(out, memoryview(buf)[:n], got)
        got += n
        count += 1
        last = time.monotonic()
    cpu = time.process_time() - cpu if first is not None else 0.0
    print("RAW", got, count, first or 0.0, last or 0.0, "-", cpu, flush=True)


def endpoint_receiver(directory: str, chunk_size: int, profile: str | None, offer: list[str]) -> None:
    """
    A TransferEndpoint on a real port, told of one transfer (C{offer}: id,
    secret, file name, as the server's OFFER line); prints PORT, then RECEIVED.
    """
    from twisted.internet import reactor

    class Listener:
        def transfer_received(self, presenter, basename, final_path):
            print("RECEIVED", final_path, time.process_time() - cpu_at_start, flush=True)

        def transfer_failed(self, direction, peer_name, basename, reason):
            print("FAILED", reason, flush=True)

    endpoint = transfer.TransferEndpoint(directory, Listener(), chunk_size=chunk_size)
    port = listen(reactor, 0, endpoint, interface="127.0.0.1")
    transfer_id, secret, filename = offer
    endpoint.expect(transfer_id, secret, "bench", "127.0.0.1", filename)
    print("PORT", port.getHost().port, flush=True)
    # the parent closes our stdin to stop us
    from twisted.internet import stdio
    from twisted.internet.protocol import Protocol

    class Stop(Protocol):
        def connectionLost(self, reason=None):
            reactor.stop()

    stdio.StandardIO(Stop())
    cpu_at_start = time.process_time()
    if profile:
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor}, profile)
    else:
        reactor.run()


# --- the parent process ------------------------------------------------------


def make_file(path: str, size: int) -> str:
    with open(path, "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(left, 4 * MiB))
            f.write(piece)
            left -= len(piece)
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def spawn(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, int]:
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line = child.stdout.readline().split()
    if not line or line[0] != "PORT":
        raise SystemExit(f"the receiver did not start: {line}")
    return child, int(line[1])


def raw_blast(path: str, size: int, chunk_size: int, write_to: str | None = None) -> dict:
    args = ["--role", "raw-receiver", "--expected", str(size)]
    if write_to:
        args += ["--dir", write_to]
    child, port = spawn(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.connect(("127.0.0.1", port))
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    start = time.monotonic()
    cpu = time.process_time()
    offset = 0
    while offset < size:
        n = os.preadv(fd, [view], offset)
        sock.send(view[:n])
        offset += n
    sent_at = time.monotonic()
    cpu = time.process_time() - cpu
    os.close(fd)
    sock.close()
    fields = child.stdout.readline().split()
    child.stdin.close()
    child.wait()
    got, count, last = int(fields[1]), int(fields[2]), float(fields[4])
    return {
        "seconds": max(last, sent_at) - start,
        "goodput": got / (max(last, sent_at) - start),
        "send_seconds": sent_at - start,
        "received": got,
        "datagrams": count,
        "cpu": (cpu, float(fields[6])),
    }


def new_hash(name: str):
    if name == "blake3":
        import blake3

        return blake3.blake3()
    return hashlib.new(name)


def hash_pass(path: str, size: int, name: str = "sha256") -> dict:
    """One pass of a hash over the file (in the page cache): both ends must make one."""
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(4 * MiB)
    view = memoryview(buf)
    digest = new_hash(name)
    start = time.monotonic()
    cpu = time.process_time()
    offset = 0
    while offset < size:
        n = os.preadv(fd, [view], offset)
        digest.update(view[:n])
        offset += n
    seconds = time.monotonic() - start
    os.close(fd)
    return {"seconds": seconds, "cpu": (time.process_time() - cpu, 0.0)}


def verification_floor(path: str, size: int, chunk_size: int, workdir: str, name: str = "sha256") -> dict:
    """The presenter's and the receiver's unavoidable work, back to back, in one process."""
    fd = os.open(path, os.O_RDONLY)
    out = os.open(os.path.join(workdir, "floor.out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.monotonic()
    cpu = time.process_time()
    digest = new_hash(name)
    offset = 0
    while offset < size:
        piece = os.pread(fd, 4 * MiB, offset)
        digest.update(piece)
        offset += len(piece)
    sender_cpu = time.process_time() - cpu
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    check = new_hash(name)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [view], offset)  # stands for the datagram received
        os.pwrite(out, view[:n], offset)
        check.update(view[:n])
        offset += n
    seconds = time.monotonic() - start
    os.close(fd)
    os.close(out)
    os.unlink(os.path.join(workdir, "floor.out"))
    assert check.digest() == digest.digest()
    return {"seconds": seconds, "cpu": (sender_cpu, time.process_time() - cpu - sender_cpu)}


def chatproto_runs(
    path: str,
    size: int,
    digest: str,
    chunk_size: int,
    losses,
    runs: int,
    workdir: str,
    profile: bool,
    file_hash: str | None = None,
) -> dict:
    """Transfers between this process and receiving children, in one reactor run."""
    from twisted.internet import defer, reactor

    results: dict[float, list[dict]] = {}

    class Listener:
        def transfer_failed(self, *args):
            pass

    @defer.inlineCallbacks
    def one(loss: float, number: int):
        inbox = os.path.join(workdir, f"inbox-{loss}-{number}")
        os.mkdir(inbox)
        env = {transfer.LOSS_ENVIRONMENT_VARIABLE: str(loss)}
        transfer_id, secret = secrets.token_hex(8), secrets.token_hex(32)  # as the server makes them
        args = ["--role", "receiver", "--dir", inbox, "--chunk-size", str(chunk_size)]
        args += ["--offer", transfer_id, secret, os.path.basename(path)]
        if profile:
            args += ["--profile-out", os.path.join(workdir, f"receiver-{loss}-{number}.prof")]
        child, port = spawn(args, env)
        hashing = {"file_hash": file_hash} if file_hash else {}
        sender = transfer.TransferEndpoint(workdir, Listener(), loss=loss, chunk_size=chunk_size, **hashing)
        udp = listen(reactor, 0, sender, interface="127.0.0.1")
        result = {}
        start = time.monotonic()
        cpu = time.process_time()
        d = sender.send_file(path, "bench", ("127.0.0.1", port), transfer_id=transfer_id, secret=secret)
        (outgoing,) = sender._outgoing.values()
        try:
            yield d
        except transfer.TransferFailed as e:
            result["error"] = e.reason
        result["seconds"] = time.monotonic() - start
        cpu = time.process_time() - cpu
        result["packets"] = outgoing.sent_packets
        result["retransmitted"] = outgoing.retransmitted
        result["dropped"] = sender.dropped
        result["window"] = (round(outgoing.cwnd), outgoing.rwnd, outgoing.srtt)
        t0 = outgoing.timeline["start"]
        result["timeline"] = {k: round(v - t0, 4) for k, v in outgoing.timeline.items()}
        yield udp.stopListening()
        line = child.stdout.readline().split()
        child.stdin.close()
        child.wait()
        received = os.path.join(inbox, "bench_" + os.path.basename(path))
        if "error" not in result:
            if line[:1] != ["RECEIVED"]:
                result["error"] = f"the receiver said {' '.join(line)}"
            else:
                result["cpu"] = (cpu, float(line[2]))
                with open(received, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != digest:
                        result["error"] = "the received file differs"
        shutil.rmtree(inbox, ignore_errors=True)
        results.setdefault(loss, []).append(result)

    @defer.inlineCallbacks
    def everything():
        try:
            for loss in losses:
                for number in range(runs):
                    yield one(loss, number)
        finally:
            reactor.stop()

    reactor.callWhenRunning(everything)
    if profile:
        import cProfile

        cProfile.runctx(
            "reactor.run(installSignalHandlers=False)",
            globals(),
            {"reactor": reactor},
            os.path.join(workdir, "sender.prof"),
        )
    else:
        reactor.run(installSignalHandlers=False)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=100, help="MiB (default 100)")
    parser.add_argument("--loss", type=float, default=0.05, help="loss of the lossy run")
    parser.add_argument("--chunk-size", type=int, default=transfer.DEFAULT_CHUNK_SIZE)
    parser.add_argument("--runs", type=int, default=1, help="repeat and keep the best")
    parser.add_argument("--smoke", action="store_true", help="4 MiB, a few seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile both endpoints")
    parser.add_argument("--hash", dest="file_hash", help="the presenter's file hash (blake3, sha256)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--offer", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options.role == "raw-receiver":
        raw_receiver(options.expected, options.dir)
        return 0
    if options.role == "receiver":
        endpoint_receiver(options.dir, options.chunk_size, options.profile_out, options.offer)
        return 0

    if options.smoke:
        options.size = 4
    size = int(options.size * MiB)
    workdir = tempfile.mkdtemp(prefix="bench-transfer-")
    try:
        path = os.path.join(workdir, "video.bin")
        digest = make_file(path, size)
        print(
            f"file {size / MiB:.1f} MiB, datagrams of {options.chunk_size} B of data, "
            f"loopback, sender and receiver in two processes, best of {options.runs}"
        )
        rows = []

        def mibs(result) -> float:
            return result.get("goodput", size / result["seconds"]) / MiB

        def best(function, *args):
            results = [function(*args) for _ in range(options.runs)]
            ok = [r for r in results if "error" not in r] or results
            return max(ok, key=mibs)

        raw = best(raw_blast, path, size, options.chunk_size)
        rows.append(
            (
                "raw UDP blast",
                raw,
                f"{raw['received'] / size:.1%} delivered; MiB/s counts what arrived",
            )
        )
        copy = best(raw_blast, path, size, options.chunk_size, workdir)
        rows.append(
            (
                "raw UDP copy into a file",
                copy,
                f"{copy['received'] / size:.1%} delivered; the raw blast + the receiver's pwrite",
            )
        )
        sha = best(hash_pass, path, size, "sha256")
        rows.append(("one SHA-256 pass (one core)", sha, "what each end spent with SHA-256"))
        hashing = options.file_hash or getattr(transfer, "DEFAULT_HASH", "sha256")
        hash_label = {"sha256": "SHA-256", "blake3": "BLAKE3"}[hashing]
        if hashing != "sha256":
            one = best(hash_pass, path, size, hashing)
            rows.append((f"one {hash_label} pass (one core)", one, "what each end spends: the transfer's hash"))
        else:
            one = sha
        floor = best(verification_floor, path, size, options.chunk_size, workdir, hashing)
        rows.append(
            ("verification floor, serial", floor, f"{hash_label}, then write+{hash_label} chunks, one core")
        )
        losses = [0.0] + ([options.loss] if options.loss else [])
        results = chatproto_runs(
            path,
            size,
            digest,
            options.chunk_size,
            losses,
            options.runs,
            workdir,
            options.profile,
            options.file_hash,
        )
        lossless = None
        for loss in losses:
            ok = [r for r in results.get(loss, []) if "error" not in r]
            result = min(ok, key=lambda r: r["seconds"]) if ok else results[loss][0]
            label = "chatproto" if not loss else f"chatproto, {loss:.0%} loss"
            if "error" in result:
                rows.append((label, result, f"ERROR {result['error']}"))
                continue
            note = (
                f"{mibs(result) / mibs(raw):.1%} of raw, {mibs(result) / mibs(copy):.0%} of raw copy, "
                f"{mibs(result) / mibs(one):.0%} of one {hash_label} pass, "
                f"{mibs(result) / mibs(floor):.0%} of serial floor, "
                f"intact; {result['packets']} datagrams, {result['retransmitted']} resent"
                + (f", windows {result['window']}" if options.profile else "")
                + (f", timeline {result['timeline']}" if options.profile else "")
            )
            if len(ok) > 1:
                times = sorted(r["seconds"] for r in ok)
                cpus = sorted(sum(r["cpu"]) for r in ok)
                note += (
                    f"; median of {len(ok)}: {times[len(ok) // 2]:.3f} s"
                    f" ({size / MiB / times[len(ok) // 2]:.0f} MiB/s,"
                    f" {size / times[len(ok) // 2] / raw['goodput']:.1%} of raw),"
                    f" CPU both ends {cpus[len(ok) // 2]:.3f} s"
                )
            if loss and lossless is not None:
                note += f", {result['seconds'] / lossless['seconds']:.2f}x the lossless time"
            else:
                lossless = result
            rows.append((label, result, note))
        for label, result, note in rows:
            seconds = result["seconds"]
            sender_cpu, receiver_cpu = result.get("cpu", (0.0, 0.0))
            print(
                f"{label:<32} {seconds:8.3f} s {mibs(result):9.1f} MiB/s"
                f"  CPU s/r {sender_cpu:6.3f} {receiver_cpu:6.3f} s   {note}"
            )
        if options.profile:
            import pstats

            for name in sorted(os.listdir(workdir)):
                if name.endswith(".prof"):
                    print(f"\n--- {name}")
                    pstats.Stats(os.path.join(workdir, name)).sort_stats("tottime").print_stats(12)
        return 1 if any("error" in r for _, r, _ in rows) else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
