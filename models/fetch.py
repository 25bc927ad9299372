"""Fill the asset cache from the mirror or the public sources: `python -m models.fetch [NAME ...]`."""

from __future__ import annotations

import argparse
import sys

from shared.assets import fetch, manifest
from shared.config import get_settings
from shared.errors import MissingAsset


def main(argv: list[str] | None = None) -> int:
    """Fetch and verify assets; one line per asset, a one-line error on failure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="asset names (default: all)")
    args = parser.parse_args(argv)
    settings = get_settings()
    names = args.names or list(manifest())
    for name in names:
        if name not in manifest():
            print(f"error: unknown asset {name!r}; known: {', '.join(manifest())}", file=sys.stderr)
            return 2
        try:
            path = fetch(name, settings)
        except MissingAsset as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"ok  {name:24s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
