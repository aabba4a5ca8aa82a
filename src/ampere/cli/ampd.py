"""`ampd`: the node daemon's entry point."""

import sys

from ..node.daemon import main as daemon_main


def main() -> None:
    sys.exit(daemon_main())


if __name__ == "__main__":
    main()
