"""segcast's benchmarks: ``python -m bench`` (or ``python bench/run.py``) rewrites docs/benchmarks.md."""
