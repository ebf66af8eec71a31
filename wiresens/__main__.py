"""``python -m wiresens``: the ``wiresens`` command."""

from wiresens.cli import main

main()
