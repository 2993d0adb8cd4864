"""``python -m rasr_lib``: see :mod:`rasr_lib.cli`."""

import sys

from rasr_lib.cli import main

sys.exit(main())
