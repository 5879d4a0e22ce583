import sys

try:
    from server.cli import main
except KeyboardInterrupt:
    # Ctrl-C while Python imports the CLI itself, before `main` can catch it: said as `main` says it later,
    # with a shell's status for Ctrl-C (`server.cli.EXIT_INTERRUPTED`, which is what was being imported).
    print("segcast: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
