"""Tessera's benchmarks: `make bench` (quick set) and `make bench-full`. See bench/README.md."""
