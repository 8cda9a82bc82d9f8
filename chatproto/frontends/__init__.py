"""
Front ends: each translates one wire format to the core's calls and renders
the core's events and errors. L{output} and L{limits} are the pieces every
front end shares (per-turn output batching, the slow-reader bound,
connection caps, command rates).
"""
