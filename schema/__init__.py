"""Tessera's contracts: the query model, the result model and the gateway⇄connector wire.

Pure pydantic, no I/O. Everything else in the project depends on this package and it depends
on nothing of ours.
"""
