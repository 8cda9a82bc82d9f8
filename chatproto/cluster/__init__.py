"""Several server nodes on Redis and PostgreSQL behaving as one server (docs/CLUSTER.md)."""
