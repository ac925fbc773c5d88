"""``python -m knnlab <stage>``: see :mod:`knnlab.cli`."""

from knnlab.cli import run

run()
