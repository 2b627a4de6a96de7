"""``python -m rill.cluster ...`` is the same command line as ``rill ...``."""

from rill.cluster.cli import main

main(prog_name="rill")
