"""Where pretrained weight files come from, offline first: the Hugging Face Hub cache, the torch hub cache.

Both caches are found from the environment at call time (`HF_HUB_CACHE`, else `HF_HOME/hub`; `TORCH_HOME`), and
`HF_HUB_OFFLINE=1` is read at call time too, so a process that set them after importing huggingface_hub still
gets what it asked for. A cached file is used without touching the network; an absent one is downloaded when
the network answers; otherwise the user gets one line naming the repository (or URL), the file to place and
where, before any data is read (`cnn_zoo.models.preprocessing.prepare_data_config` calls these first).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

# timm's order (timm.models._hub.load_state_dict_from_hf): the safetensors file first, then the pickle
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TRUE = ("1", "on", "yes", "true")


def hf_cache_dir() -> Path:
    """The Hub cache huggingface_hub would use if imported now: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def hf_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, or as huggingface_hub read it at import."""
    if any(os.environ.get(name, "").strip().lower() in TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def split_revision(repo: str) -> tuple[str, str | None]:
    """timm's `repo@revision` form."""
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


def hub_file(repo: str, filenames: tuple[str, ...] = HF_WEIGHT_FILES) -> Path:
    """The first of `filenames` in Hub repository `repo` (`owner/name[@revision]`): cached, or downloaded."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, revision = split_revision(repo)
    cache = hf_cache_dir()
    for name in filenames:
        cached = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision)
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
    place = f"{cache}/models--{repo_id.replace('/', '--')}/snapshots/<commit>/{filenames[0]}"
    hint = (
        f"place {filenames[0]} of https://huggingface.co/{repo_id} in the Hub cache ({place}, with refs/main "
        f"holding <commit>; `hf download {repo_id}` does it on a connected machine, then copy HF_HOME), "
        "or pass model.net.weights_path=<.safetensors/.pth file>, or model.net.weights=null (random weights, "
        "not transfer learning)"
    )
    if hf_offline():
        raise CnnZooError(f"weights of {repo_id} are not in the Hugging Face cache and HF_HUB_OFFLINE is set: {hint}")
    failure = ""
    for name in filenames:
        try:
            log.info("downloading %s from the Hugging Face Hub (%s) into %s", name, repo_id, cache)
            return Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache))
        except EntryNotFoundError:
            continue
        except Exception as err:  # offline: connection errors, timeouts, HTTP errors of several types
            failure = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
            break
    reason = f" and the download failed ({failure})" if failure else f" and the Hub repo has none of {filenames}"
    raise CnnZooError(f"weights of {repo_id} are not in the Hugging Face cache{reason}: {hint}")


def url_file(url: str, what: str) -> Path:
    """The torch hub cache's copy of `url` (`TORCH_HOME/hub/checkpoints/<name>`), downloaded when absent."""
    from cnn_zoo.models import weights

    path = weights.hub_cache_file(url)
    if path.is_file():
        return path
    try:
        log.info("downloading %s to %s", url, path)
        weights.download(url, path)
    except Exception as err:  # offline: URLError, socket errors, HTTP errors, hash mismatch...
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
        raise CnnZooError(
            f"{what} are not in the torch hub cache and the download failed ({reason}): place {url} at {path} "
            "(or set TORCH_HOME to a folder whose hub/checkpoints/ holds it), or pass model.net.weights_path="
            "<state dict file>, or model.net.weights=null to train from random weights (not transfer learning)"
        ) from err
    return path
