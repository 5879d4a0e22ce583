"""``python -m bench``: run every benchmark and write their page (see bench/run.py)."""

import sys

from bench.run import main

sys.exit(main())
