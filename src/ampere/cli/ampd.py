"""`ampd`: the node daemon's entry point."""

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        # Answered before importing the node: test frameworks (pyln-testing) run `--version` for every node.
        from .. import VERSION_STRING

        print(VERSION_STRING)
        sys.exit(0)
    from ampere.node.app.daemon import main as daemon_main

    sys.exit(daemon_main())


if __name__ == "__main__":
    main()
