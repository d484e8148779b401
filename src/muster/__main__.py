"""Run the command line with ``python -m muster``."""

from muster.cli.main import main

main()
