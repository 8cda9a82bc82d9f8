"""The line protocol of SPEC.md section 4 (chatproto's own client, nc)."""
