"""``python -m bench``: run every benchmark and rewrite docs/benchmarks.md (see bench/run.py)."""

import sys

from bench.run import main

sys.exit(main())
