"""What each party trusts: public keys and key sets (PEM, JWKS), their loading and background
refresh, JWT verification against them, and the replay cache. Used by the gateway (researcher
tokens) and by the connectors (the gateway's request tokens, the researcher's approval)."""
