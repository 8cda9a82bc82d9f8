"""
The cluster's cost: 1, 2 and 3 nodes on a private Redis and PostgreSQL.

  .venv/bin/python bench/bench_cluster.py [--nodes 1,2,3] [--messages 4000] [--fanout 1000]

For each node count: CPU seconds (user + system, from /proc) of every node,
of redis-server and of PostgreSQL, per message, for same-node and
cross-node private messages and per delivery for a group message fanned
out to FANOUT members spread over the nodes; and the cross-node delivery
latency (send to receipt, one load-generator clock) p50/p99 at a paced rate.
The load generator (asyncio, raw line protocol) spreads its clients over
every node. This machine's cores are shared by all of it: compare costs,
not throughput.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chatproto.cluster.local import LocalPostgres, LocalRedis

TICK = os.sysconf("SC_CLK_TCK")
GROUP = "Fans"


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def children(ppid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        found.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return found


class Cluster:
    def __init__(self, nodes: int, users: int, fanout: int):
        self.scratch = tempfile.mkdtemp(prefix="chatproto-bench-cluster-")
        os.chmod(self.scratch, 0o755)
        self.credentials = os.path.join(self.scratch, "credentials.txt")
        with open(self.credentials, "w") as f:
            for i in range(users):
                f.write(f"u{i} pw{i}\n")
        self.postgres = LocalPostgres(os.path.join(self.scratch, "pg")).start()
        self.redis = LocalRedis(os.path.join(self.scratch, "redis")).start()
        self._group(fanout)
        self.nodes, self.ports = [], []
        for i in range(nodes):
            data_dir = os.path.join(self.scratch, f"node{i}")
            os.mkdir(data_dir)
            process = subprocess.Popen(
                [sys.executable, "-m", "chatproto.server", "--interface", "127.0.0.1", "--data-dir", data_dir,
                 "--credentials", self.credentials, "--database", self.postgres.url, "--cluster",
                 self.redis.url, "--max-connections-per-ip", "0", "--max-connections", "0", "--rate-limit", "0",
                 "0", "3"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            for line in process.stdout:
                match = re.search(r"listening on [\d.]+:(\d+)", line)
                if match:
                    self.ports.append(int(match.group(1)))
                if "joined" in line:
                    break
            self.nodes.append(process)
            subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)

    def _group(self, fanout: int) -> None:
        from chatproto.storage.postgres import PostgresDatabase

        db = PostgresDatabase(self.postgres.url).open()
        ops = [("group", GROUP.lower(), GROUP, "u0", False)]
        ops += [("member", GROUP.lower(), f"u{i}", True) for i in range(fanout)]
        db.commit_now(ops)
        db._close()

    def postgres_pids(self) -> list[int]:
        with open(os.path.join(self.postgres.data, "postmaster.pid")) as f:
            main = int(f.readline())
        return [main, *children(main)]

    def cpu(self) -> dict:
        return {"nodes": sum(cpu_seconds(p.pid) for p in self.nodes),
                "redis": cpu_seconds(self.redis.process.pid),
                "postgres": sum(cpu_seconds(pid) for pid in self.postgres_pids())}

    def rss(self) -> int:
        """Resident bytes of every node together."""
        total = 0
        for process in self.nodes:
            with open(f"/proc/{process.pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return total

    def stop(self) -> None:
        for process in self.nodes:
            process.terminate()
        for process in self.nodes:
            process.wait(20)
        self.redis.stop()
        self.postgres.stop("immediate")
        shutil.rmtree(self.scratch, ignore_errors=True)


class Client:
    def __init__(self, name):
        self.name = name
        self.received = 0
        self.latencies = []
        self.acks = 0
        self.done = None

    async def connect(self, port):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        self.writer.write(f"LOGIN {self.name} pw{self.name[1:]} 7000\n".encode())
        line = await self.reader.readline()
        assert line.startswith(b"OK Welcome"), line
        self.task = asyncio.ensure_future(self.read())

    async def read(self):
        while True:
            line = await self.reader.readline()
            if not line:
                return
            if line.startswith(b"MSG"):
                self.received += 1
                match = re.search(rb"t=([\d.]+)", line)
                if match:
                    self.latencies.append(time.perf_counter() - float(match.group(1)))
            elif line.startswith((b"OK", b"ERR")):
                self.acks += 1
            if self.done is not None and self.done():
                self.event.set()

    async def until(self, predicate, timeout=120):
        self.done = predicate
        self.event = asyncio.Event()
        if not predicate():
            await asyncio.wait_for(self.event.wait(), timeout)
        self.done = None

    def send(self, line: str):
        self.writer.write(line.encode() + b"\n")


async def scenario_private(cluster, clients, pairs, messages, window=200):
    """Each sender sends messages/len(pairs) to its receiver, WINDOW unacknowledged at most."""
    per = messages // len(pairs)
    before = cluster.cpu()
    start = time.perf_counter()

    async def run(sender, receiver):
        base_acks, base_received = sender.acks, receiver.received
        for i in range(per):
            sender.send(f"/msgto {receiver.name} t={time.perf_counter():.6f}")
            if i - (sender.acks - base_acks) >= window:
                await sender.until(lambda i=i: i - (sender.acks - base_acks) < window // 2)
        await sender.until(lambda: sender.acks - base_acks >= per)
        await receiver.until(lambda: receiver.received - base_received >= per)

    await asyncio.gather(*(run(s, r) for s, r in pairs))
    elapsed = time.perf_counter() - start
    return _cost(before, cluster.cpu(), per * len(pairs), elapsed)


async def scenario_paced(cluster, pairs, rate, seconds):
    """Cross-node messages at a fixed total rate: latency from send to receipt."""
    for _s, r in pairs:
        r.latencies.clear()
    total = int(rate * seconds)
    interval = len(pairs) / rate
    start = time.perf_counter()

    async def run(sender, receiver, offset):
        base = receiver.received
        n = total // len(pairs)
        for i in range(n):
            due = start + offset + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the load generator, not waiting for the network
            sender.send(f"/msgto {receiver.name} t={time.perf_counter():.6f}")
        await receiver.until(lambda: receiver.received - base >= n)

    await asyncio.gather(*(run(s, r, k * interval / len(pairs)) for k, (s, r) in enumerate(pairs)))
    latencies = sorted(x for _s, r in pairs for x in r.latencies)
    achieved = len(latencies) / (time.perf_counter() - start)
    return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000, achieved


async def scenario_fanout(cluster, sender, members, messages):
    before = cluster.cpu()
    bases = [m.received for m in members]
    start = time.perf_counter()
    for _ in range(messages):
        sender.send(f"/groupmsg {GROUP} t={time.perf_counter():.6f}")
    await sender.until(lambda: sender.acks >= messages)
    for member, base in zip(members, bases):
        await member.until(lambda m=member, b=base: m.received - b >= messages)
    elapsed = time.perf_counter() - start
    return _cost(before, cluster.cpu(), messages * len(members), elapsed)


def _cost(before, after, count, elapsed):
    spent = {k: after[k] - before[k] for k in before}
    return {"us_nodes_redis": (spent["nodes"] + spent["redis"]) / count * 1e6,
            "us_postgres": spent["postgres"] / count * 1e6, "rate": count / elapsed}


async def bench(nodes: int, messages: int, fanout: int, rate: int):
    users = max(fanout, 200)
    cluster = Cluster(nodes, users, fanout)
    try:
        rss_before = cluster.rss()
        clients = []
        for i in range(users):
            client = Client(f"u{i}")
            await client.connect(cluster.ports[i % nodes])  # spread over every node
            clients.append(client)
        results = {"rss_per_user": (cluster.rss() - rss_before) / users}
        # Disjoint pairs (a client waits for one thing at a time), u0 kept for the fan-out.
        pool = {j: [c for i, c in enumerate(clients) if i and i % nodes == j] for j in range(nodes)}
        same = [(pool[k % nodes].pop(), pool[k % nodes].pop()) for k in range(10)]
        results["same"] = await scenario_private(cluster, clients, same, messages)
        if nodes > 1:
            cross = [(pool[k % nodes].pop(), pool[(k + 1) % nodes].pop()) for k in range(10)]
            results["cross"] = await scenario_private(cluster, clients, cross, messages)
            results["latency"] = await scenario_paced(cluster, cross, rate, 3)
        members = [c for c in clients[1:fanout]]
        results["fanout"] = await scenario_fanout(cluster, clients[0], members, max(20, messages // 20))
        for client in clients:
            client.writer.close()
        return results
    finally:
        cluster.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=2000, help="paced cross-node messages a second")
    args = parser.parse_args()
    print("| nodes | same-node µs/msg (nodes+Redis) | PG µs/msg | cross-node µs/msg (nodes+Redis) | PG µs/msg "
          "| fan-out µs/delivery (nodes+Redis) | cross-node p50 / p99 ms (at msgs/s) | RSS per user (all nodes) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.nodes.split(",")]:
        r = asyncio.run(bench(n, args.messages, args.fanout, args.rate))
        same, fan = r["same"], r["fanout"]
        cross = r.get("cross")
        lat = r.get("latency")
        print(f"| {n} | {same['us_nodes_redis']:.0f} ({same['rate']:.0f}/s) | {same['us_postgres']:.0f} | "
              + (f"{cross['us_nodes_redis']:.0f} ({cross['rate']:.0f}/s) | {cross['us_postgres']:.0f} | "
                 if cross else "- | - | ")
              + f"{fan['us_nodes_redis']:.1f} ({fan['rate']:.0f}/s) | "
              + (f"{lat[0]:.1f} / {lat[1]:.1f} ({lat[2]:.0f}/s) |" if lat else "- |")
              + f" {r['rss_per_user'] / 1024:.1f} KiB |", flush=True)


if __name__ == "__main__":
    main()
