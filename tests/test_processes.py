"""Ports for the services a test or the demo starts."""

from __future__ import annotations

import random

import pytest

from tessera.processes import free_port, free_port_block


def test_a_port_is_never_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # A federation's ports are all chosen before its first process binds one: the same
    # random pick must not give the gateway a port a node was given (its requests would reach
    # the node, answering 404).
    picks = iter([20_000, 20_000, 20_001, 20_002, 20_010])
    monkeypatch.setattr(random, "randint", lambda low, high: next(picks))
    gateway = free_port_block(2)
    node = free_port()
    assert (gateway, node) == (20_000, 20_002)
    # Nor any port of a block.
    assert free_port_block(3) == 20_010


def test_free_ports_are_distinct() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
