"""``python -m knnlab <stage>``: see :mod:`knnlab.cli`."""

import sys

from knnlab.cli import main

sys.exit(main())
