"""Files on the Hugging Face Hub named as `hf://OWNER/REPO/path/in/repo` (or `hf://OWNER/REPO@REVISION/path`).

`resolve_path` turns such a name into a local file through `huggingface_hub.hf_hub_download` (its cache:
`HF_HUB_CACHE`, or `cache_dir`), downloading it unless the network is off (`HF_HUB_OFFLINE=1`, or
`local_files_only=True`), in which case the file must already be in the cache. Any other name is a local path
and passes through. huggingface_hub is an optional extra (`pip install "cortex-cli[hub]"`), imported only
when a hub name is resolved. A REVISION (a branch, tag or commit) is one path segment.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..core.errors import CortexError, first_line

SCHEME = "hf://"
OFFLINE_ENV = "HF_HUB_OFFLINE"
CACHE_ENV = "HF_HUB_CACHE"
INSTALL = 'pip install "cortex-cli[hub]"'


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub model repository: `repo_id` ('OWNER/REPO'), `filename` (its path in the repo), `revision`."""

    repo_id: str
    filename: str
    revision: str | None = None

    def url(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{at}/{self.filename}"


def is_hub_path(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a Hub file: `hf://...`, or `hf:/...` as `pathlib.Path` collapses the double slash."""
    return str(path).startswith("hf:/")


def parse_hub_path(path: str | os.PathLike[str]) -> HubFile:
    """`hf://OWNER/REPO[@REVISION]/path/in/repo` -> its parts; CortexError if it does not have them."""
    text = str(path)
    rest = text[len("hf:"):].lstrip("/")
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise CortexError(f"{text!r} is not a Hub file; write hf://OWNER/REPO/path/in/repo (or hf://OWNER/REPO@REVISION/path)")
    owner, repo, filename = parts[0], parts[1], "/".join(parts[2:])
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if not repo or not revision:
            raise CortexError(f"{text!r} names an empty repository or revision; write hf://OWNER/REPO@REVISION/path")
    return HubFile(f"{owner}/{repo}", filename, revision)


def _huggingface_hub() -> ModuleType:
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError as exc:
        raise CortexError(f"hf:// paths need huggingface_hub: {INSTALL}") from exc


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_error(hub_file: HubFile, offline: bool, exc: Exception) -> CortexError:
    """One line for what hf_hub_download raised (matched by class name: the classes moved between versions)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    url = hub_file.url()
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
        why = f"the network is off ({OFFLINE_ENV} or local_files_only)" if offline else "the Hub is not reachable"
        return CortexError(f"{url} is not in the Hugging Face cache and {why}; fetch it once with the network on")
    if names & {"GatedRepoError"}:
        return CortexError(f"{url}: the repository {hub_file.repo_id!r} is gated; accept its terms and log in (huggingface-cli login)")
    if names & {"RepositoryNotFoundError"}:
        return CortexError(f"{url}: no repository {hub_file.repo_id!r} on the Hub (or it is private)")
    if names & {"RevisionNotFoundError"}:
        return CortexError(f"{url}: the repository {hub_file.repo_id!r} has no revision {hub_file.revision!r}")
    if names & {"EntryNotFoundError"}:
        return CortexError(f"{url}: the repository {hub_file.repo_id!r} has no file {hub_file.filename!r}")
    return CortexError(f"{url} could not be fetched: {first_line(exc)}")


def resolve_path(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                 local_files_only: bool | None = None) -> Path:
    """The local file a model file name stands for: a Hub file's cached copy (downloaded if needed), else the path.

    Args:
        path: `hf://OWNER/REPO[@REVISION]/path/in/repo`, or a local path (returned with `~` expanded).
        cache_dir: the Hub cache; None: `HF_HUB_CACHE` as set now, else huggingface_hub's default.
        local_files_only: never touch the network; None: whether `HF_HUB_OFFLINE` is set now.

    Raises:
        CortexError: a malformed hf:// name, huggingface_hub missing, or the file not obtainable (one line).
    """
    if not is_hub_path(path):
        return Path(path).expanduser()
    hub_file = parse_hub_path(path)
    hub = _huggingface_hub()
    offline = _offline() if local_files_only is None else local_files_only
    cache = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
    try:
        local = hub.hf_hub_download(repo_id=hub_file.repo_id, filename=hub_file.filename, revision=hub_file.revision,
                                    cache_dir=cache, local_files_only=offline)
    except Exception as exc:  # huggingface_hub's errors, whichever version raised them
        raise _hub_error(hub_file, offline, exc) from exc
    return Path(local)
