"""
Where the core's state is kept: L{ledger.Ledger} (the one object the core
talks to) writes the text logs (L{textlogs}; README, "Files the server
writes") and a database
(L{memory.MemoryDatabase}, L{sqlite.SQLiteDatabase}) in one batch per
reactor turn.
"""
