"""``python -m server`` and the installed ``segcast`` command (pyproject's ``[project.scripts]``): one
entry, so that a Ctrl-C while Python is still importing the CLI ends alike for both."""

import sys
from typing import NoReturn


def run() -> NoReturn:
    """segcast's command line. A Ctrl-C while Python imports the CLI itself, before `main` can catch it,
    is said as `main` says it later, with a shell's status for Ctrl-C (`server.cli.EXIT_INTERRUPTED`,
    which is what was being imported), not as a traceback."""
    try:
        from server.cli import main
    except KeyboardInterrupt:
        print("segcast: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())


if __name__ == "__main__":
    run()
