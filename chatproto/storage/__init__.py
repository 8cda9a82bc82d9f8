"""
Where the core's state is kept: L{ledger.Ledger} (the one object the core
talks to) writes SPEC.md's text logs (L{textlogs}) and a database
(L{memory.MemoryDatabase}, L{sqlite.SQLiteDatabase}) in one batch per
reactor turn.
"""
