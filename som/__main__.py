"""``python -m som`` is the ``som`` command."""

from som.cli import main

main()
