"""
Benchmark only: chatproto's server with the search index left out, to measure
what keeping the index costs a message (``python bench/run_all.py --servers
ours,ours-noindex``; docs/PERFORMANCE.md, "Search"). Every message is stored
as usual but none is made searchable (no FTS5 row, no search_rows row): the
batch does exactly what it did before the index existed.

Same command line as C{python -m chatproto.server}.
"""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from chatproto.storage import sqlite  # noqa: E402

sqlite.searchable = lambda log, recipient, text: False

if __name__ == "__main__":
    runpy.run_module("chatproto.server", run_name="__main__", alter_sys=True)
