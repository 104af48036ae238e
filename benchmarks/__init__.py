"""The fabric's benchmark suite: latency, throughput, start-up, memory and scale, with records.

Run it as ``fabric bench COMMAND`` or ``python -m benchmarks COMMAND``:

``endpoint``  the endpoint path (``benchmarks.endpoint``, swept by ``benchmarks.sweep``)
``service``   the service path: SDK -> HTTP -> service -> endpoint (``benchmarks.service``, swept alike)
``peers``     the same workloads on Parsl, Dask, Ray and ``ProcessPoolExecutor`` (``benchmarks.peers``)
``scale``     the interchange scheduler under thousands of simulated managers (``benchmarks.scale``)
``micro``     pytest-benchmark micro benchmarks (``benchmarks/micro``)
``all``       all of them into one record directory (``benchmarks.suite``)
``plot``      PNG charts from a record directory (``benchmarks.plot``)

Every command checks every result it gets back and writes ``record.json`` (machine,
versions, configuration, figures) and ``report.md`` into its output directory
(``benchmarks.record``). Timing thresholds belong here, never in the tests.
"""
