"""
EXPERIMENT, benchmark only: chatproto's server with each batch's private
messages of one conversation stored as ONE row (a run), not a row a message
(docs/PERFORMANCE.md, "Where the floor is"), to measure end to end what that
design would save (``python bench/run_all.py --servers ours,ours-runrows
--scenarios pipeline,private``). Only the writing is changed: a run's row holds
its conversation, its first and last SEQ and time and its messages (a line each,
as the text log's); the search index is written as usual. Nothing reads those
rows back: history, unread counts and search of private messages do not work
in this server. Same command line as C{python -m chatproto.server}.
"""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from chatproto.storage import sqlite  # noqa: E402

original = sqlite.SQLiteDatabase._insert_messages


def _insert_messages(self, db, ops) -> None:
    if not getattr(self, "_runs_table", False):
        db.execute("CREATE TABLE IF NOT EXISTS private_runs (id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL, "
                   "first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, first_time REAL NOT NULL, "
                   "last_time REAL NOT NULL, body TEXT NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS private_runs_by_conversation "
                   "ON private_runs (conversation, last_time, last_seq)")
        self._runs_table = True
    others = []
    runs: dict = {}
    waiting = self._waiting
    last = self._last_search_id
    conversations = self._conversations
    for op in ops:
        _, log_name, seq, timestamp, time, sender, recipient, text = op
        if log_name != sqlite.PRIVATE_LOG or recipient is None:
            others.append(op)
            continue
        conversation = conversations.get((sender, recipient)) or self._conversation(sender, recipient, True)
        if sqlite.searchable(log_name, recipient, text):  # as _insert_messages: the search index as usual
            search_id = int(time * 1e6)
            if search_id <= last:
                search_id = last + 1
            last = search_id
            waiting.append((search_id, log_name, seq, conversation, sender, recipient, text, timestamp, time))
        run = runs.get(conversation)
        line = f"{seq}\t{time!r}\t{timestamp}\t{sender}\t{text}"
        if run is None:
            runs[conversation] = [seq, seq, time, time, [line]]
        else:
            run[1] = seq
            run[3] = time
            run[4].append(line)
    self._last_search_id = last
    if runs:
        db.executemany("INSERT INTO private_runs (conversation, first_seq, last_seq, first_time, last_time, body) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       [(conversation, first, last_seq, first_time, last_time, "\n".join(lines))
                        for conversation, (first, last_seq, first_time, last_time, lines) in runs.items()])
    if others:
        original(self, db, others)


sqlite.SQLiteDatabase._insert_messages = _insert_messages

if __name__ == "__main__":
    runpy.run_module("chatproto.server", run_name="__main__", alter_sys=True)
