"""Measurements of the fabric: latency, throughput, start-up and memory, as JSON lines.

Each benchmark is a module runnable on its own (``python -m benchmarks.endpoint ...``) or
through the dispatcher (``python -m benchmarks endpoint ...``). A benchmark prints exactly
one JSON line on stdout, checks every result it gets back, and exits non-zero when any
result is wrong. Timing thresholds belong here, never in the tests.
"""
