"""``python -m benchmarks.soak``: see :mod:`benchmarks.soak`."""

import sys

from benchmarks.soak.main import main

sys.exit(main())
