"""The audit trail: one append-only, hash-chained record per query at the gateway and at
every connector, in one format that both services write and `tessera audit verify` reads.

- `entry` — what is recorded (`AuditRecord`), canonical JSON, sealing into the chain;
- `chain` — verification of a chain and the Ed25519 signatures of its heads (pure);
- `store` — the `AuditStore` protocol, its in-memory fake and `open_store(url)`;
- `sqlite`, `postgres` — the two stores (embedded SQLite by default);
- `log` — `AuditLog`, the single writer: group commit, durable before it returns, periodic
  head signatures.

The format is a contract between the services and the verifier, like `schema.wire`; the two
store modules are the only place in `schema` that does I/O, so that gateway and connectors
share one implementation (`tests/test_architecture.py` keeps the rest of `schema` pure).
"""
