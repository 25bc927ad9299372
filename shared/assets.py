"""Model and data files named in models/manifest.json: resolve, verify and fetch into the cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.config import ROOT, Settings, get_settings
from shared.errors import MissingAsset

MANIFEST = ROOT / "models" / "manifest.json"
FETCH_HINT = "run `python -m models.fetch` (with ASSET_MIRROR=../shared/data where the mirror is)"


@dataclass(frozen=True)
class Asset:
    """One manifest entry."""

    name: str
    path: str
    kind: str
    sha256: str
    size: int
    url: str | None
    source: str
    licence: str


@cache
def manifest() -> dict[str, Asset]:
    """All assets of the manifest by name."""
    data = json.loads(MANIFEST.read_text())
    keys = Asset.__dataclass_fields__
    return {a["name"]: Asset(**{k: a.get(k) for k in keys}) for a in data["assets"]}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(folder: Path) -> str:
    """sha256 over the sorted lines '<sha256>  <relative path>' of every file below folder."""
    lines = sorted(
        (str(p.relative_to(folder)), sha256_file(p)) for p in folder.rglob("*") if p.is_file()
    )
    return hashlib.sha256("".join(f"{h}  {rel}\n" for rel, h in lines).encode()).hexdigest()


def _digest(asset: Asset, path: Path) -> str:
    return tree_sha256(path) if asset.kind == "dir" else sha256_file(path)


def asset_path(name: str, settings: Settings | None = None) -> Path:
    """Path of a cached asset; raises MissingAsset (with the fix) when it is not there.

    Checksums are verified by the fetcher; at run time a cheap size check catches truncation.
    """
    settings = settings or get_settings()
    try:
        asset = manifest()[name]
    except KeyError:
        raise MissingAsset(f"no asset named {name!r} in {MANIFEST}") from None
    path = settings.asset_cache / asset.path
    ok_marker = path.parent / f".{path.name}.verified"
    if not path.exists() or not ok_marker.exists():
        raise MissingAsset(f"asset {name!r} is missing from {settings.asset_cache}: {FETCH_HINT}")
    if asset.kind == "file" and path.stat().st_size != asset.size:
        raise MissingAsset(f"asset {name!r} at {path} has the wrong size: {FETCH_HINT}")
    return path


def _copy_in(asset: Asset, src: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest.parent))
    try:
        staged = tmp / dest.name
        if asset.kind == "dir":
            shutil.copytree(src, staged)
        else:
            shutil.copyfile(src, staged)
        got = _digest(asset, staged)
        if got != asset.sha256:
            raise MissingAsset(
                f"asset {asset.name!r} from {src} has sha256 {got}, the manifest says {asset.sha256}"
            )
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(staged, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(asset: Asset, dest: Path) -> None:
    if asset.kind == "dir" or not asset.url:
        raise MissingAsset(
            f"asset {asset.name!r} has no direct download ({asset.source}); "
            "set ASSET_MIRROR to a folder that holds it"
        )
    tmp = dest.parent / f".{dest.name}.part"
    try:
        with urllib.request.urlopen(asset.url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MissingAsset(f"could not download {asset.name!r} from {asset.url}: {e}") from None
    _copy_in(asset, tmp, dest)
    tmp.unlink(missing_ok=True)


def fetch(name: str, settings: Settings | None = None) -> Path:
    """Put one asset into the cache (from the mirror, else its URL) and verify its checksum."""
    settings = settings or get_settings()
    asset = manifest()[name]
    dest = settings.asset_cache / asset.path
    marker = dest.parent / f".{dest.name}.verified"
    if marker.exists() and dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if settings.asset_mirror is not None:
        if not settings.asset_mirror.is_dir():
            raise MissingAsset(f"ASSET_MIRROR={settings.asset_mirror} is not a folder; fix the path")
        src = settings.asset_mirror / asset.path
        if not src.exists():
            raise MissingAsset(f"asset {name!r} is not in the mirror: {src} does not exist")
        _copy_in(asset, src, dest)
    else:
        _download(asset, dest)
    marker.write_text(asset.sha256 + "\n")
    return dest


def fetch_all(names: list[str] | None = None, settings: Settings | None = None) -> list[Path]:
    """Fetch every asset (or the named ones); stops at the first failure with its reason."""
    return [fetch(n, settings) for n in (names or list(manifest()))]
