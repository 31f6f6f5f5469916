"""Where the audit trail is written: the stores and the writer of a service's chain.

- `store` — the `AuditStore` protocol, its in-memory fake, the tables every store keeps;
- `sqlite`, `postgres` — the two stores (embedded SQLite by default);
- `stores` — `open_store(url)`: the store for a URL, by its scheme;
- `log` — `AuditLog`, the single writer: group commit, durable before it returns, periodic
  head signatures.

What an entry holds and how a chain is verified is `schema.audit`, the contract between the
services and the verifier.
"""
