"""Several server nodes on Redis and PostgreSQL behaving as one server (SPEC.md section 10)."""
