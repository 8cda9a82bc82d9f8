"""
Search over a large history: how long a search takes and how much room the
index takes (docs/PERFORMANCE.md, "Search").

    python bench/bench_search.py                     # 1,000,000 messages, 1,000 searches of each kind
    python bench/bench_search.py --messages 100000   # smaller
    python bench/bench_search.py --keep /tmp/big.db  # keep the database

The generator writes straight into a SQLite database through chatproto's own
batch path (L{SQLiteDatabase.commit_now}, 10,000 messages per transaction),
so the index rows are the ones the server writes. Users, groups and words:

- 2,000 users; 500 groups of 30 members (each user in about 7); 40 % of the
  messages private (a random pair), 60 % in a group (a random member);
- 8 to 16 words a message, from a vocabulary of 50,000 words with Zipf's
  frequencies (word k about 1/k as often as the first), so the first words
  are in a large part of the messages and the last in a handful.

Each search is made by a random user over what that user may read (their
private messages, their groups), through L{SQLiteDatabase.search}'s query on
this thread, timed from the call to the last row:

- common: one of the 10 most frequent words (each in 10-50 % of the messages);
- rare: a word found in 1 to 20 messages of the whole history;
- two words: a common word and a word of middling frequency;
- prefix: the first 3 letters of a frequent word (prefix queries).

The index's size is read from SQLite's C{dbstat} table.
"""

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chatproto.core.search import SearchQuery  # noqa: E402
from chatproto.storage.sqlite import SQLiteDatabase  # noqa: E402

USERS = 2000
GROUPS = 500
MEMBERS = 30
VOCABULARY = 50000
BATCH = 10000
TIMESTAMP = "01 Jun 2022 21:30:04"


def vocabulary(rng) -> list[str]:
    """50,000 distinct pronounceable words, some with accents (found without them)."""
    consonants, vowels = "bcdfghjklmnprstvz", "aeiouéè"
    words, seen = [], set()
    while len(words) < VOCABULARY:
        n = rng.randint(2, 4)
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def people(rng) -> tuple[list, dict, dict]:
    """The users, the groups' members, and each user's groups (as a search's scope)."""
    users = [f"u{i:04d}" for i in range(USERS)]
    groups = {f"g{i:03d}": rng.sample(users, MEMBERS) for i in range(GROUPS)}
    memberships: dict = {user: {} for user in users}
    for group, members in groups.items():
        for member in members:
            memberships[member][group] = 1
    return users, groups, memberships


def generate(db, n: int, rng) -> tuple[Counter, dict]:
    """C{n} messages into C{db}; the number of messages each word is in, and each user's groups."""
    users, groups, memberships = people(rng)
    words = vocabulary(rng)
    cumulative, total = [], 0.0
    for rank in range(1, VOCABULARY + 1):
        total += 1.0 / rank
        cumulative.append(total)
    counts: Counter = Counter()
    group_names = list(groups)
    seqs = {"": 0, **{g: 0 for g in groups}}
    time0 = 1_650_000_000.0
    done = 0
    while done < n:
        size = min(BATCH, n - done)
        lengths = [rng.randint(8, 16) for _ in range(size)]
        drawn = rng.choices(words, cum_weights=cumulative, k=sum(lengths))
        ops, at = [], 0
        for i, length in enumerate(lengths):
            text_words = drawn[at:at + length]
            at += length
            counts.update(set(text_words))
            text = " ".join(text_words)
            moment = time0 + (done + i) * 0.01
            if rng.random() < 0.4:
                sender, recipient = rng.sample(users, 2)
                seqs[""] += 1
                ops.append(("msg", "", seqs[""], TIMESTAMP, moment, sender, recipient, text))
            else:
                group = rng.choice(group_names)
                seqs[group] += 1
                ops.append(("msg", group, seqs[group], TIMESTAMP, moment, rng.choice(groups[group]), None, text))
        db.commit_now(ops)
        done += size
    return counts, memberships


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args) -> None:
    rng = random.Random(args.seed)
    directory = tempfile.mkdtemp(prefix="chatproto-bench-search-")
    path = args.reuse or args.keep or os.path.join(directory, "chatproto.db")
    if os.path.exists(path) and not args.reuse:
        os.remove(path)
    try:
        db = PostgresIndex(args.postgres) if args.postgres else SQLiteDatabase(path).open()
        if args.reuse:  # the same people (same seed); the words counted again
            _, _, memberships = people(rng)
            counts = Counter()
            for (text,) in db._db.execute("SELECT text FROM messages"):
                counts.update(set(text.split()))
            args.messages = sum(1 for _ in db._db.execute("SELECT 1 FROM messages"))
        else:
            started = time.perf_counter()
            counts, memberships = generate(db, args.messages, rng)
            generated = time.perf_counter() - started
            if args.postgres:
                db.analyze()
            print(f"{args.messages:,} messages generated and indexed in {generated:.1f} s "
                  f"({generated / args.messages * 1e6:.1f} us a message, one process, "
                  f"{BATCH:,} a transaction)")
        users = list(memberships)
        ranked = [word for word, _ in counts.most_common()]
        rare = [word for word in ranked if 1 <= counts[word] <= 20]
        middling = [word for word in ranked if args.messages // 2000 <= counts[word] <= args.messages // 200]
        kinds = {
            "common word": lambda: (rng.choice(ranked[:10]),),
            "rare word": lambda: (rng.choice(rare),),
            "two words": lambda: (rng.choice(ranked[:10]), rng.choice(middling or ranked[:100])),
            "3-letter prefix": lambda: (rng.choice(ranked[:200])[:3],),
        }
        print(f"common words are in {counts[ranked[9]] / args.messages:.0%} to "
              f"{counts[ranked[0]] / args.messages:.0%} of the messages; {len(rare):,} rare words")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine: wall "
              f"times include waiting for a core; CPU times are this thread's own)")
        print(f"{'search':<16} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU p50':>8} {'CPU p99':>8} "
              f"{'results (mean)':>15}")
        server_cpu = getattr(db, "server_cpu", lambda: None)
        for kind, words_of in kinds.items():
            times, cpu, found = [], [], 0
            server_before = server_cpu()
            for _ in range(args.searches):
                user = rng.choice(users)
                query = SearchQuery(words_of(), user, groups=memberships[user])
                t, c = time.perf_counter(), time.thread_time()
                found += len(db._search(query))  # on this thread: the worker's call, without the hop
                cpu.append((time.thread_time() - c) * 1000)
                times.append((time.perf_counter() - t) * 1000)
            print(f"{kind:<16} {percentile(times, 0.5):8.2f} {percentile(times, 0.99):8.2f} "
                  f"{max(times):8.2f} {percentile(cpu, 0.5):8.2f} {percentile(cpu, 0.99):8.2f} "
                  f"{found / args.searches:15.1f}")
            if server_before is not None:  # PostgreSQL's own process does the work: its CPU, a mean
                print(f"{'':<16} PostgreSQL's CPU: {(server_cpu() - server_before) / args.searches * 1000:.2f} ms "
                      "a search (mean)")
        db._close()
        if args.postgres:
            db.size(args.messages)
        else:
            size(path, args.messages)
    finally:
        shutil.rmtree(directory, True)


class PostgresIndex:
    """The same on PostgreSQL (C{--postgres URL}, an empty database): its batch path, its search."""

    def __init__(self, url):
        from chatproto.storage import postgres

        self.module = postgres
        self.database = postgres.PostgresDatabase(url).open()
        self._db = self.database._connection()

    def commit_now(self, ops):
        """
        The generated messages by C{COPY}, not the server's batch path (one
        C{INSERT} a message: a million took 10 minutes): the same rows, and
        the same trigger computes each one's C{tsvector} (C{COPY} fires row
        triggers), so the index is the one the server makes.
        """
        from chatproto.storage.model import peers_key

        with self._db.cursor().copy(
                "COPY messages (log, seq, timestamp, time, sender, recipient, peers, text) FROM STDIN") as copy:
            for _, log_name, seq, timestamp, time_, sender, recipient, text in ops:
                copy.write_row((log_name, seq, timestamp, time_, sender, recipient,
                                peers_key(sender, recipient) if recipient is not None else None, text))
        self._db.commit()

    def analyze(self):
        """What autovacuum does to a table this size soon after: the planner's statistics."""
        self._db.execute("ANALYZE messages")
        self._db.commit()

    def _search(self, query):
        return self.database._guarded(self.module._search, query)

    def server_cpu(self):
        """The CPU seconds of this connection's PostgreSQL process (on this machine), or None."""
        pid = self.database._connection().execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _close(self):
        self.database._close()

    def size(self, n: int) -> None:
        import psycopg

        with psycopg.connect(self.database.url) as db:
            gin = db.execute("SELECT pg_relation_size('messages_search')").fetchone()[0]
            column = db.execute("SELECT SUM(pg_column_size(search)) FROM messages").fetchone()[0] or 0
            total = db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        mib = 1024 * 1024
        print(f"database {total / mib:.0f} MiB: search index {(gin + column) / mib:.0f} MiB "
              f"({(gin + column) / n:.0f} bytes a message: the GIN index {gin / mib:.0f} MiB, "
              f"the tsvector column {column / mib:.0f} MiB)")


def size(path: str, n: int) -> None:
    db = sqlite3.connect(path)
    try:
        rows = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    finally:
        db.close()
    index = sum(v for k, v in rows.items() if k.startswith("search_"))
    messages = sum(v for k, v in rows.items() if k.startswith(("messages", "sqlite_autoindex_messages")))
    total = os.path.getsize(path)
    mib = 1024 * 1024
    print(f"database {total / mib:.0f} MiB: messages and their history indexes {messages / mib:.0f} MiB, "
          f"search index {index / mib:.0f} MiB ({index / n:.0f} bytes a message; "
          + ", ".join(f"{k} {v / mib:.0f}" for k, v in sorted(rows.items()) if k.startswith("search_"))
          + " MiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=1000, help="of each kind")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--keep", help="write the database here and keep it")
    parser.add_argument("--postgres", help="an empty PostgreSQL database's URL: measure it instead of SQLite")
    parser.add_argument("--reuse", help="search a database --keep wrote (same --seed) instead of generating")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
