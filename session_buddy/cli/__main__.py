"""``python -m session_buddy.cli``: the same as the ``session-buddy`` command."""

from session_buddy.cli import main

main()
