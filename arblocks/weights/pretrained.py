"""A model from a folder or the Hugging Face Hub: :func:`from_pretrained`.

A local folder is read as it is; anything else of the form ``owner/name`` (optionally ``hf:owner/name`` or
``owner/name@revision``) is a Hub repository, fetched with ``huggingface_hub`` (only the folder format's files:
spec, weights, palette, card) into its cache, from which later loads work offline. Without a network and without a
cached copy the error says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .folder import CARD, PALETTE, SPEC, WEIGHTS, PretrainedError, load_folder

HUB_ID = re.compile(r"^(?:hf:)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")


def is_pretrained(source: str | Path) -> bool:
    """Whether ``source`` names a pretrained folder or Hub id rather than a checkpoint file."""
    path = Path(source)
    if path.is_dir():
        return True
    return not path.exists() and bool(HUB_ID.match(str(source))) and not str(source).endswith((".pt", ".pth", ".ckpt"))


def resolve(source: str | Path) -> Path:
    """The local folder of ``source``: the folder itself, or the Hub repository's files downloaded into the cache."""
    path = Path(source)
    if path.is_dir():
        return path
    match = HUB_ID.match(str(source))
    if path.exists() or match is None:
        raise PretrainedError(f"{source}: neither a folder nor a Hugging Face Hub id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(repo_id=match["repo"], revision=match["revision"], allow_patterns=[SPEC, WEIGHTS, PALETTE, CARD]))
    except LocalEntryNotFoundError:
        raise PretrainedError(f"{source}: cannot reach the Hugging Face Hub (offline?) and no copy is in its cache; "
                              "download the folder where there is a network and pass its path") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise PretrainedError(f"{source}: no such repository or revision on the Hugging Face Hub ({type(error).__name__})") from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise PretrainedError(f"{source}: the Hugging Face Hub download failed: {str(error).splitlines()[0][:200]}") from None


def load_pretrained(source: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(model, info)`` of a folder or Hub id (see :func:`arblocks.weights.folder.load_folder` for ``info``)."""
    return load_folder(resolve(source))


def from_pretrained(source: str | Path):
    """The model of an exported folder or a Hugging Face Hub repository in that format (``owner/name``), in
    evaluation mode: an :class:`arblocks.ARModel`, or an :class:`arblocks.StagedModel` for a spec with stages."""
    return load_pretrained(source)[0]
