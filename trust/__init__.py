"""What each party trusts: public keys and key sets (PEM, JWKS), their loading and background
refresh, JWT verification against them, and the replay cache. Used by the gateway (researcher
tokens) and by the connectors (the gateway's request tokens, the researcher's approval). And
the HTTP edge both serve untrusted callers on (`http_edge`): what a request gets that
aiohttp's parser refuses before any check of ours runs."""
