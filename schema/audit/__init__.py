"""The audit trail's format: one append-only, hash-chained record per query at the gateway and
at every connector, in one format that both services write and `tessera audit verify` reads.

- `entry` — what is recorded (`AuditRecord`), canonical JSON, sealing into the chain;
- `chain` — verification of a chain and the Ed25519 signatures of its heads.

The format is a contract between the services and the verifier, like `schema.wire`, and pure:
the stores that keep it and the writer of a chain are in `oversight.audit`.
"""
