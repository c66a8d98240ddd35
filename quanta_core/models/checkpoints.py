"""Model checkpoints by Hugging Face hub revision: resolve, download, load.

A (model, step) pair names a repository and a revision:

* ``pythia-*`` (e.g. ``pythia-70m``, ``pythia-410m-deduped``) → ``EleutherAI/<name>`` at revision
  ``<step>`` (a branch such as ``step143000``), from the Hugging Face hub cache;
* ``quanta-demo`` (the embedded demo suite, :mod:`quanta_core.models.demo_suite`) → ``quanta/quanta-demo``,
  a local repository in the hub's own layout under ``<QUANTA_CACHE_DIR>/hub``;
* any ``owner/name`` → that repository as given (it must hold a GPT-NeoX causal LM).

Both go through the same code: :func:`huggingface_hub.snapshot_download` over a hub-layout cache
(``models--<owner>--<name>/refs/<revision>`` holds the commit hash, the files are in
``snapshots/<commit>/``). The cache is looked at first (no network); only when the revision is not
cached and we are online is the hub asked, once, with short timeouts: a connection failure stops
at once with :class:`CheckpointNotFound` instead of retrying.

Environment (read at every call, not at import; the project's ``.env`` too, :mod:`quanta_core.environment`):
``HF_HUB_CACHE`` (the hub cache directory), else ``HF_HOME``/hub, else ``~/.cache/huggingface/hub``;
``HF_HUB_OFFLINE=1`` forbids network access.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from quanta_core.atomic import write_bytes
from quanta_core.corpus.tokenizer import offline_tokenizer_path
from quanta_core.environment import env_value
from quanta_core.paths import default_cache_dir, describe_cache, hub_dir
from quanta_core.presets import DEMO_MODEL

log = logging.getLogger(__name__)

DEMO_REPO_ID = "quanta/quanta-demo"
PYTHIA_OWNER = "EleutherAI"
HUB_TIMEOUT_S = 10.0  # one metadata request to the hub; a dead network fails on the first try

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
CONFIG_FILES = ["config.json", "generation_config.json"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resolved or loaded (the message names model, revision and place)."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """The revision is not in the cache and cannot be downloaded (offline, no network, or the
    repository does not have that revision)."""


class NotAGPTNeoXModel(CheckpointError, ValueError):
    """The repository's ``config.json`` is not a GPT-NeoX causal language model."""


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint. ``model``: ``GPTNeoXForCausalLM`` in eval mode on ``device``/``dtype``;
    ``commit``: the 40-hex commit hash of the revision (which exact weights these are)."""

    model: torch.nn.Module
    repo_id: str
    revision: str
    commit: str
    snapshot_dir: Path
    device: torch.device
    dtype: torch.dtype

    @property
    def tokenizer_path(self) -> Path:
        """The snapshot's ``tokenizer.json``, else the offline Pythia tokenizer (identical ids)."""
        path = self.snapshot_dir / "tokenizer.json"
        if path.is_file():
            return path
        return offline_tokenizer_path()


# -- names and places ---------------------------------------------------------------------------


def repo_id_for(model_name: str) -> str:
    """Model name → hub repository id (see the module docstring)."""
    if model_name == DEMO_MODEL:
        return DEMO_REPO_ID
    if "/" in model_name:
        return model_name
    if model_name.startswith("pythia-"):
        return f"{PYTHIA_OWNER}/{model_name}"
    raise CheckpointError(
        f"unknown model name {model_name!r}: expected 'pythia-<size>[-deduped][-v0]', {DEMO_MODEL!r} "
        "or a hub repository id 'owner/name'"
    )


def env_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = env_value("HF_HUB_OFFLINE") or env_value("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def default_hub_cache() -> Path:
    """``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub`` (or ``~/.cache``)."""
    explicit = env_value("HF_HUB_CACHE") or env_value("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    xdg = env_value("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = env_value("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def demo_hub_dir(quanta_cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the demo suite's hub-layout repository lives: ``<QUANTA_CACHE_DIR>/hub``."""
    return hub_dir(quanta_cache_dir or default_cache_dir())


def hub_cache_for(model_name: str, quanta_cache_dir=None, hub_cache_dir=None) -> Path:
    """The hub cache to look in: ``<quanta cache>/hub`` for the demo model, else ``hub_cache_dir``
    or :func:`default_hub_cache`."""
    if model_name == DEMO_MODEL:
        return demo_hub_dir(quanta_cache_dir)
    return Path(hub_cache_dir).expanduser() if hub_cache_dir else default_hub_cache()


def repo_folder(hub_cache_dir: str | os.PathLike, repo_id: str) -> Path:
    """``<hub cache>/models--<owner>--<name>`` (the hub's own layout)."""
    return Path(hub_cache_dir) / ("models--" + repo_id.replace("/", "--"))


def cached_revisions(hub_cache_dir: str | os.PathLike, repo_id: str) -> list[str]:
    """Revisions (refs) of ``repo_id`` present in the cache, sorted (``huggingface_hub.scan_cache_dir``)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hub_cache_dir)
    except CacheNotFound:
        return []
    return sorted(ref for repo in info.repos if repo.repo_id == repo_id for rev in repo.revisions for ref in rev.refs)


# -- resolution ---------------------------------------------------------------------------------


def _missing_revision_hint(model_name: str, step: str) -> str:
    early = step in {f"step{2**i}" for i in range(10)}
    if model_name.endswith("-v0") and early:
        return " (the -v0 Pythia models have no early log-spaced checkpoints step1…step512)"
    return ""


def _not_found(model_name, repo_id, step, cache_dir, reason) -> CheckpointNotFound:
    cached = cached_revisions(cache_dir, repo_id)
    shown = ", ".join(cached[:8]) + (f", … ({len(cached)} in all)" if len(cached) > 8 else "")
    return CheckpointNotFound(
        f"checkpoint {model_name} at revision {step!r} (repository {repo_id}) not found: {reason}. "
        f"Looked in the hub cache {repo_folder(cache_dir, repo_id)}"
        + (f" (cached revisions: {shown})" if cached else " (nothing cached for this repository)")
        + _missing_revision_hint(model_name, step)
        + "."
    )


def _weight_files(snapshot: Path) -> list[str]:
    return [name for name in WEIGHT_FILES if (snapshot / name).is_file()]


def check_gptneox_config(snapshot: Path, model_name: str, step: str) -> dict:
    """Read ``config.json`` and make sure it is a GPT-NeoX causal LM; returns the config dict."""
    path = snapshot / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointNotFound(f"checkpoint {model_name} at {step!r}: no config.json in {snapshot}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {model_name} at {step!r}: {path} is not valid JSON ({e})") from e
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type != "gpt_neox" or (architectures and "GPTNeoXForCausalLM" not in architectures):
        raise NotAGPTNeoXModel(
            f"checkpoint {model_name} at {step!r} is not a GPT-NeoX causal language model: {path} has "
            f"model_type={model_type!r}, architectures={architectures!r} (expected 'gpt_neox', "
            "GPTNeoXForCausalLM)"
        )
    return config


def _commit_of(snapshot: Path) -> str:
    commit = Path(snapshot).name
    if not _COMMIT.match(commit):
        raise CheckpointError(f"snapshot folder {snapshot} is not named by a 40-hex commit hash")
    return commit


def _local_snapshot(repo_id, step, cache_dir, patterns) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(
            repo_id, revision=step, cache_dir=str(cache_dir), local_files_only=True, allow_patterns=patterns
        )
    except LocalEntryNotFoundError:  # includes IncompleteSnapshotError
        return None
    path = Path(path)
    return path if (path / "config.json").is_file() and _weight_files(path) else None


def _http_errors() -> tuple:
    """The HTTP client's error base classes (huggingface_hub uses ``httpx2`` or ``httpx``)."""
    errors = []
    for name in ("httpx2", "httpx", "requests"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        errors.append(getattr(module, "HTTPError", None) or module.RequestException)
    return tuple(errors)


def _download(model_name, repo_id, step, cache_dir) -> Path:
    """Ask the hub once: revision exists? config is GPT-NeoX? then fetch weights + tokenizer."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    network_errors = (*_http_errors(), OSError, OfflineModeIsEnabled, LocalEntryNotFoundError)
    try:
        info = HfApi().model_info(repo_id, revision=step, timeout=HUB_TIMEOUT_S)
    except RevisionNotFoundError:
        raise _not_found(model_name, repo_id, step, cache_dir, f"the hub repository has no revision {step!r}") from None
    except RepositoryNotFoundError:
        raise _not_found(model_name, repo_id, step, cache_dir,
                         "the hub has no such repository (or it is gated)") from None
    except (HfHubHTTPError, *network_errors) as e:
        raise _not_found(
            model_name, repo_id, step, cache_dir,
            f"not cached, and the hub could not be reached ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "set HF_HUB_OFFLINE=1 to skip the network, or use the embedded demo model 'quanta-demo'",
        ) from None
    files = {s.rfilename for s in info.siblings or []}
    if any(f.endswith(".safetensors") for f in files):
        weights = ["*.safetensors", "model.safetensors.index.json"]
    elif any(f.startswith("pytorch_model") for f in files):
        weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
    else:
        raise CheckpointError(f"{repo_id} at {step!r} has no model weights (files: {sorted(files)[:20]})")
    try:
        config_path = hf_hub_download(
            repo_id, "config.json", revision=step, cache_dir=str(cache_dir), etag_timeout=HUB_TIMEOUT_S
        )
        check_gptneox_config(Path(config_path).parent, model_name, step)
        log.info("downloading %s at %s into %s", repo_id, step, cache_dir)
        path = snapshot_download(
            repo_id, revision=step, cache_dir=str(cache_dir), etag_timeout=HUB_TIMEOUT_S,
            allow_patterns=CONFIG_FILES + TOKENIZER_FILES + weights,
        )
    except (HfHubHTTPError, *network_errors) as e:
        raise _not_found(
            model_name, repo_id, step, cache_dir, f"the download failed ({type(e).__name__}: {str(e)[:200]})"
        ) from e
    return Path(path)


def resolve_checkpoint(
    model_name: str,
    step: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
) -> tuple[str, str, Path]:
    """Find (downloading if needed and allowed) ``model_name`` at revision ``step``.

    ``cache_dir``: the hub cache (default :func:`hub_cache_for`: ``<QUANTA_CACHE_DIR>/hub`` for the
    demo model, else ``HF_HUB_CACHE``/``HF_HOME``). ``offline``: default from ``HF_HUB_OFFLINE``;
    the demo repository is local, so it is always resolved offline.

    Returns ``(repo_id, commit, snapshot_dir)``. Raises :class:`CheckpointNotFound` (not cached and
    offline / unreachable / no such revision), :class:`NotAGPTNeoXModel`, :class:`CheckpointError`.
    """
    repo_id = repo_id_for(model_name)
    cache_dir = Path(cache_dir).expanduser() if cache_dir else hub_cache_for(model_name)
    if offline is None:
        offline = env_offline()
    if model_name == DEMO_MODEL:
        offline = True
    patterns = CONFIG_FILES + TOKENIZER_FILES + list(WEIGHT_FILES) + ["*.safetensors"]
    snapshot = _local_snapshot(repo_id, step, cache_dir, patterns)
    if snapshot is None:
        if offline:
            reason = "it is not in the cache and network access is off"
            reason += (
                f" (the demo suite is trained by materializing the `quanta_demo_suite` asset into "
                f"{describe_cache(cache_dir.parent)})"
                if model_name == DEMO_MODEL
                else " (HF_HUB_OFFLINE is set or offline=True)"
            )
            raise _not_found(model_name, repo_id, step, cache_dir, reason)
        snapshot = _download(model_name, repo_id, step, cache_dir)
    check_gptneox_config(snapshot, model_name, step)
    if not _weight_files(snapshot):
        raise _not_found(model_name, repo_id, step, cache_dir, f"the cached snapshot {snapshot} has no weights")
    return repo_id, _commit_of(snapshot), snapshot


# -- loading ------------------------------------------------------------------------------------


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"float32"`` (default, the original's precision), ``"bfloat16"`` or ``"float16"``."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype in _DTYPES:
        resolved = _DTYPES[dtype]
    else:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(_DTYPES)}")
    if resolved != torch.float32 and device.type == "cpu":
        log.warning("%s on CPU is slow and less precise than float32; it is meant for GPUs", resolved)
    return resolved


def load_checkpoint(
    model_name: str,
    step: str,
    *,
    hub_cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float32",
    offline: bool | None = None,
) -> LoadedCheckpoint:
    """Resolve (see :func:`resolve_checkpoint`) and load ``GPTNeoXForCausalLM`` in eval mode."""
    from transformers import GPTNeoXForCausalLM

    repo_id, commit, snapshot = resolve_checkpoint(model_name, step, cache_dir=hub_cache_dir, offline=offline)
    target = pick_device(device)
    torch_dtype = pick_dtype(dtype, target)
    try:
        model = GPTNeoXForCausalLM.from_pretrained(str(snapshot), dtype=torch_dtype, local_files_only=True)
    except Exception as e:  # corrupt weights, shape mismatch, …
        raise CheckpointError(f"could not load {model_name} at {step!r} from {snapshot}: {e}") from e
    model = model.to(target).eval()
    log.info("loaded %s@%s (commit %s) on %s as %s", repo_id, step, commit, target, torch_dtype)
    return LoadedCheckpoint(model, repo_id, step, commit, snapshot, target, torch_dtype)


# -- writing a hub-layout repository (the demo suite) ------------------------------------------


def content_commit(files: dict[str, bytes]) -> str:
    """A deterministic 40-hex "commit" for a snapshot: SHA-1 over the sorted file names and the
    SHA-256 of each file's bytes (same content ⇒ same commit)."""
    import hashlib

    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).hexdigest().encode() + b"\n")
    return h.hexdigest()


def write_hub_snapshot(repo_dir: str | os.PathLike, revision: str, files: dict[str, bytes]) -> str:
    """Write ``files`` as ``<repo_dir>/snapshots/<commit>/…`` and point ``refs/<revision>`` at it.

    ``repo_dir`` is a ``models--<owner>--<name>`` folder. Returns the commit. Files are plain
    files (the hub itself uses symlinks into ``blobs/``; both layouts resolve the same way).
    """
    repo_dir = Path(repo_dir)
    commit = content_commit(files)
    snapshot = repo_dir / "snapshots" / commit
    for name, data in files.items():
        write_bytes(snapshot / name, data)
    write_bytes(repo_dir / "refs" / revision, commit.encode())
    return commit
