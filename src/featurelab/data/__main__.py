"""``python -m featurelab.data``: see :mod:`featurelab.data.cli`."""

import sys

from .cli import main

sys.exit(main())
