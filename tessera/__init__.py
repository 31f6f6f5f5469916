"""The `tessera` command: the composition root that starts gateways, connectors and demos.

It may start gateway and connector processes side by side; the packages themselves never
import each other.
"""
