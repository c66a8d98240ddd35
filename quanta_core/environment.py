"""The one place that reads environment variables: the process environment first, then a
``.env`` file in the clone's root (next to ``pyproject.toml``), if the user wrote one.

Nothing writes ``.env``: Dagster's CLI, started in the clone, loads the same file and lets its
values win over exported ones (which would silently redirect a test's or a user's own
``DAGSTER_HOME`` / ``QUANTA_CACHE_DIR``). The clone's defaults are relative to the project instead
(:func:`quanta_core.paths.default_cache_dir`). An installed (non-clone) package has no project root
and reads the process environment only.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

ENV_FILE = ".env"


def project_root() -> Path | None:
    """The clone this package runs from (the folder holding ``pyproject.toml``), else ``None``."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def env_file() -> Path | None:
    """The project's ``.env`` when it exists, else ``None``."""
    root = project_root()
    path = root / ENV_FILE if root else None
    return path if path is not None and path.is_file() else None


def _file_value(name: str) -> str | None:
    path = env_file()
    return (dotenv_values(path).get(name) or None) if path else None


def env_value(name: str, default: str | None = None) -> str | None:
    """``$name`` when set and non-empty, else its value in the project's ``.env``, else ``default``
    (read at every call, so a test's ``monkeypatch.setenv`` or an edited ``.env`` counts)."""
    return os.environ.get(name) or _file_value(name) or default


def env_source(name: str) -> str | None:
    """Where :func:`env_value` found ``name``: ``"$NAME"``, ``"<path>/.env"``, or ``None`` (not set)."""
    if os.environ.get(name):
        return f"${name}"
    return str(env_file()) if _file_value(name) else None
