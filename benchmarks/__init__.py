"""ticketlab's speed benchmarks: ``python -m benchmarks`` (or ``./workbook bench``).

The suite measures what the issue asks and prints a table (item, measured, target, met?), writes
every raw number to a JSON file (``--json``, default ``artifacts/benchmarks.json``) and rewrites
``benchmarks/RESULTS.md``. Comparisons are ratios within one run (``ticketlab.timing``), never
absolute times across runs. One module per benchmark group:

* ``trainer``: ``ticketlab.training`` vs a naive loop; GFLOP/s vs the measured matmul peak.
* ``population``: ``train_population`` vs sequential ``train`` (XOR ×1,000, LeNet ×8, ×32, ×64).
* ``pruning``: magnitude pruning as a share of one IMP round's training time.
* ``imp``: IMP end to end (wall time, peak memory) in subprocesses.
* ``notebooks``: quick-mode execution time of every notebook, on a copy.

Machinery: ``ticketlab.timing`` (interleaved rounds, clocks, ratios; the labs' harness too),
``flops`` (FLOP counting), ``results`` (rows, targets, sample summaries), ``report`` (table,
JSON, RESULTS.md), ``suite`` (selection, run).
"""
