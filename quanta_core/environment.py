"""The one place that reads environment variables: the process environment first, then the
project's ``.env`` file.

``make install`` writes ``.env`` in the clone's root (next to ``pyproject.toml``; only when missing,
gitignored) with the absolute ``QUANTA_CACHE_DIR`` and ``DAGSTER_HOME`` of ``make demo``. Dagster's
CLI reads ``.env`` from the working directory; the library finds it from its own location, so a
plain ``python`` or a notebook anywhere uses the same cache as ``make``. An installed (non-clone)
package has no project root and reads the process environment only.
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
