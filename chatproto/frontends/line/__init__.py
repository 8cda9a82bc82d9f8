"""The line protocol of docs/PROTOCOL.md (chatproto's own client, nc)."""
