"""segcast's benchmarks: ``python -m bench`` (or ``python bench/run.py``); see bench/run.py.

``--update-docs`` rewrites docs/benchmarks.md; without it the page goes to the cache folder.
"""
