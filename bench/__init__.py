"""Benchmarks and the soak: speed, Triton, dashboard and station figures, and memory over simulated days.

Run from the repository root as modules (``python -m bench.bench``, ``python -m bench.soak`` ...); the figures
they print go into docs/performance.md, docs/triton.md, docs/dashboard.md, docs/station.md and
docs/operations/reliability.md. Not installed with streamdetect: they import it, it never imports them.
"""
