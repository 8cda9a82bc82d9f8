"""
Benchmark only: ``bench/bench_search.py`` with PostgreSQL's search as it was
at f037847 (one query over the GIN index, the scope tokens in the tsquery,
newest first by ``pos``, psycopg's prepared statements allowed), to measure
the search of today against it in one run (docs/PERFORMANCE.md, "Search,
second round"):

    python bench/experiments/pg_search_f037847.py --postgres URL --reuse x
    python bench/bench_search.py --postgres URL --reuse x
"""

import dataclasses
import os
import runpy
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench_search.py")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from chatproto.core.search import search_words  # noqa: E402
from chatproto.storage import postgres  # noqa: E402
from chatproto.storage.postgres import _COLUMNS, message_from_row, sql_filters, tsquery_text  # noqa: E402


def _search(db, query):
    if not all(word.isascii() for word in query.words):
        rows = db.execute("SELECT chatproto_unaccent(w) FROM unnest(%s::text[]) WITH ORDINALITY AS t(w, i) "
                          "ORDER BY i", (list(query.words),)).fetchall()
        query = dataclasses.replace(query, words=search_words(" ".join(row[0] for row in rows)))
        if query.is_empty():
            return []
    sql = f"SELECT {_COLUMNS} FROM messages WHERE search @@ to_tsquery('simple', %s) AND text <> '[deleted]'"
    args = [tsquery_text(query)]
    filters, filter_args = sql_filters(query, "%s")
    sql += filters + " ORDER BY pos DESC LIMIT %s"
    args += filter_args + [query.limit]
    return [message_from_row(row) for row in db.execute(sql, args)]


if __name__ == "__main__":
    postgres._search = _search
    sys.argv[0] = BENCH
    runpy.run_path(BENCH, run_name="__main__")
