"""The gateway a researcher talks to: GraphQL in, one signed request per national node out,
protected aggregates back.

Kept import-light on purpose: `tessera --help` imports this package, so strawberry and aiohttp
are only imported by the modules that need them (`gateway.app`, `gateway.graphql`).
"""
