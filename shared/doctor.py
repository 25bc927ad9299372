"""Check that MongoDB, Redis and the assets are reachable: `python -m shared.doctor [--assets]`.

Prints one line per problem, naming the cause and the fix; exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import sys

import redis

from shared import db
from shared.assets import asset_path, manifest
from shared.config import get_settings
from shared.errors import MaskwatchError


def problems(check_assets: bool) -> list[str]:
    """Human-readable problems, empty when all is well."""
    out = []
    try:
        settings = get_settings()
    except ValueError as e:
        return [str(e)]
    try:
        db.ping()
    except MaskwatchError as e:
        out.append(str(e))
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.connect_timeout_s,
                             socket_timeout=settings.connect_timeout_s).ping()
    except (redis.RedisError, ValueError) as e:
        out.append(f"Redis at {settings.redis_url} is unreachable ({type(e).__name__}); start it "
                   "(bin/services start) or fix REDIS_URL")
    if check_assets:
        for name in manifest():
            try:
                asset_path(name, settings)
            except MaskwatchError as e:
                out.append(str(e))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print problems and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", action="store_true", help="also check the asset cache")
    found = problems(parser.parse_args(argv).assets)
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
