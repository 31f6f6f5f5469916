"""What compliance oversees, as I/O: the audit trail's stores and single writer
(`oversight.audit`) and the export of traces (`oversight.tracing`).

The formats are contracts in `schema` (`schema.audit` for entries and their chain,
`schema.telemetry` for span names and attributes); this package writes them. The gateway, the
connectors and the `tessera` command import it; it imports `schema` only
(`tests/test_architecture.py`).
"""
