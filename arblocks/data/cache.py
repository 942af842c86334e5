"""The data cache: where named datasets' files live, and their download with checksums.

The folder is ``$ARBLOCKS_DATA`` if set, else ``$XDG_CACHE_HOME/arblocks/data`` (``~/.cache/arblocks/data``); each
dataset has a subfolder named after it. A file is used only when its SHA-256 matches the published file's; a missing
or mismatched one is downloaded with pooch (progress bar, checksum verified, written atomically) from the dataset's
mirrors in turn. ``ARBLOCKS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) never downloads. When nothing can be fetched, the
error says which file to put where, its size and its checksum.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .base import DataError


@dataclass(frozen=True)
class Remote:
    """A published file: its name in the dataset's folder, its checksum ("sha256:..." or "md5:..."), size and mirrors."""

    name: str
    checksum: str
    size: int
    urls: tuple[str, ...] = ()


def cache_root() -> Path:
    if os.environ.get("ARBLOCKS_DATA"):
        return Path(os.environ["ARBLOCKS_DATA"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "arblocks" / "data"


def dataset_folder(dataset: str) -> Path:
    return cache_root() / dataset


def offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in ("ARBLOCKS_OFFLINE", "HF_HUB_OFFLINE"))


def file_checksum(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, remote: Remote) -> bool:
    algorithm, _, expected = remote.checksum.partition(":")
    return path.is_file() and file_checksum(path, algorithm) == expected


def _where(dataset: str, remote: Remote, path: Path) -> str:
    source = f" from {remote.urls[0]}" if remote.urls else ""
    return f"put {remote.name} ({remote.size:,} bytes, {remote.checksum}){source} at {path}"


def fetch(dataset: str, remote: Remote, folder: Path | None = None) -> Path:
    """The verified local copy of ``remote`` in the dataset's folder, downloaded if missing (unless offline)."""
    folder = folder or dataset_folder(dataset)
    path = folder / remote.name
    if verified(path, remote):
        return path
    problem = f"{path} does not have the published file's checksum (a partial or other file)" if path.exists() else f"{path} is missing"
    if not remote.urls:
        raise DataError(f"{dataset}: {problem}; this dataset is not downloaded for you (its licence asks for a sign-up): {_where(dataset, remote, path)}")
    if offline():
        raise DataError(f"{dataset}: {problem} and downloads are off (ARBLOCKS_OFFLINE / HF_HUB_OFFLINE): {_where(dataset, remote, path)}")
    try:
        import pooch
    except ImportError:
        raise DataError(f"{dataset}: {problem}; downloading needs pooch (pip install pooch), or {_where(dataset, remote, path)}") from None
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in remote.urls:
        try:
            pooch.retrieve(url, known_hash=remote.checksum, fname=remote.name, path=folder, progressbar=True)
            if verified(path, remote):
                return path
            failures.append(f"{url}: the file written does not have the checksum")
        except Exception as error:  # noqa: BLE001 - no network, a dead mirror, a wrong checksum: try the next, then say what to do
            failures.append(f"{url}: {type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}")
    raise DataError(f"{dataset}: {problem} and could not be downloaded ({'; '.join(failures)}); {_where(dataset, remote, path)} "
                    f"(the folder is $ARBLOCKS_DATA/{dataset}, now {folder})")
