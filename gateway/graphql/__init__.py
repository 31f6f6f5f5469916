"""The researcher-facing GraphQL API (strawberry): types, inputs, resolvers, error codes."""
