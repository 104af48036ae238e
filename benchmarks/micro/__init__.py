"""Micro benchmarks (pytest-benchmark): ``pytest benchmarks/micro --benchmark-only``.

Not collected by the test suite (``testpaths = ["tests"]``); ``fabric bench micro`` runs
them and turns pytest-benchmark's JSON into a record. Each benchmark that times a batch
sets ``extra_info["items"]`` (tasks or results per call) so per-item rates can be shown.
"""
