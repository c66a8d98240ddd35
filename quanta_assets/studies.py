"""Studies: named sets of analysis settings, side by side.

A study is a YAML file (``studies/<name>.yaml`` in the repository, or in the folder named by
``$QUANTA_STUDIES``)::

    description: The paper's second matrix, C_abs = |G||G|ᵀ.
    similarity_settings: {absolute_gradients: true}
    cluster_settings: {num_clusters: 30}

Its keys are the settings resources of the analysis (:data:`STUDY_SETTINGS`), each with the
fields of :mod:`quanta_assets.settings` (unset: the field's default, e.g. the family's preset).
Each study gets its own similarity (unless it declares no similarity setting: then it clusters
the default study's) → clusters → report → training dynamics, under asset keys prefixed by its key (the
name with ``-`` → ``_``: ``paper_abs/quanta_clusters``) and stored under ``<cache>/<model>/<step>/
<key>/`` and ``<cache>/<model>/<key>/``; it shares the corpus, checkpoints and loss tables. The
``default`` study is the definitions' own settings, under today's keys and paths.

A file that does not validate is left out with a warning naming the file and field; the rest of
the definitions load.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quanta_assets.settings import (
    ClusterSettings,
    ReportSettings,
    SimilaritySettings,
    StabilitySettings,
    TrainingDynamicsSettings,
)
from quanta_core.environment import env_value
from quanta_core.paths import DEFAULT_STUDY, study_key

STUDIES_ENV = "QUANTA_STUDIES"
STUDY_SETTINGS = {
    "similarity_settings": SimilaritySettings,
    "cluster_settings": ClusterSettings,
    "report_settings": ReportSettings,
    "dynamics_settings": TrainingDynamicsSettings,
    "stability_settings": StabilitySettings,
}
"""The settings a study may declare: resource key → settings class."""
DEFAULT = DEFAULT_STUDY
REPOSITORY_STUDIES = Path(__file__).resolve().parents[1] / "studies"


class Study(BaseModel):
    """One study: ``name`` (the file's stem), a ``description`` and settings per resource key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NAME: ClassVar[re.Pattern] = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

    name: str
    description: str = ""
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str = ""

    @field_validator("name")
    @classmethod
    def _a_name(cls, value: str) -> str:
        if not cls.NAME.match(value):
            raise ValueError(f"study name {value!r} must be lowercase letters, digits and '-' (from the file name)")
        return value

    @model_validator(mode="after")
    def _settings_validate(self):
        for key, values in self.settings.items():
            unknown = set(values) - set(STUDY_SETTINGS[key].model_fields)
            if unknown:
                raise ValueError(f"{key}: unknown field(s) {sorted(unknown)}; fields: "
                                 f"{sorted(STUDY_SETTINGS[key].model_fields)}")
        self.resources()  # pydantic checks every value
        return self

    @property
    def key(self) -> str:
        """The study's asset-key prefix and directory name (``-`` → ``_``); ``""`` for the default."""
        return study_key(self.name)

    @property
    def key_prefix(self) -> list[str]:
        return [self.key] if self.key else []

    @property
    def own_similarity(self) -> bool:
        """Does the study compute its own similarity? Not when it declares no similarity setting: its
        clusters then read the default study's ``quanta_similarity`` (the expensive step, shared)."""
        return bool(self.key and self.settings.get("similarity_settings"))

    @property
    def similarity_key(self) -> list[str]:
        """The asset key of the similarity this study clusters."""
        return [*(self.key_prefix if self.own_similarity else []), "quanta_similarity"]

    def resource_key(self, base: str) -> str:
        """The resource key of this study's ``base`` settings (``paper_abs__cluster_settings``)."""
        return f"{self.key}__{base}" if self.key else base

    def asset_key(self, name: str) -> str:
        """The user-facing asset key string of ``name`` in this study (``paper_abs/quanta_clusters``)."""
        return "/".join([*self.key_prefix, name])

    def group(self, module_group: str) -> str:
        """The asset group: the module's for the default study, the study key for the others."""
        return self.key or module_group

    def note(self) -> str:
        """A sentence for the descriptions of the study's assets (nothing for the default)."""
        if not self.key:
            return ""
        return (f" — Study `{self.name}` ({self.source}): {self.description} Stored under "
                f"`<cache>/<model>/<step>/{self.key}/` (and `<cache>/<model>/{self.key}/`).")

    def resources(self) -> dict[str, Any]:
        """``{resource key: settings resource}`` of every settings class a study has."""
        return {self.resource_key(k): cls(**self.settings.get(k, {})) for k, cls in STUDY_SETTINGS.items()}


DEFAULT_STUDY = Study(name=DEFAULT, description="The definitions' own settings (each family's preset).")


def read_study(path: Path) -> Study:
    """The study declared in ``path``; ``ValueError`` naming the file and the field that is wrong."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    unknown = set(raw) - {"description", *STUDY_SETTINGS}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; a study has description and "
                         f"{', '.join(STUDY_SETTINGS)}")
    settings = {k: raw[k] or {} for k in STUDY_SETTINGS if k in raw}
    try:
        return Study(name=path.stem, description=str(raw.get("description", "")), settings=settings,
                     source=str(path))
    except ValidationError as error:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        raise ValueError(f"{path}: {where}") from error


def study_folders() -> list[Path]:
    """The repository's ``studies/`` and the folders in ``$QUANTA_STUDIES`` (``:``-separated)."""
    extra = [Path(p).expanduser() for p in (env_value(STUDIES_ENV) or "").split(":") if p]
    return [REPOSITORY_STUDIES, *extra]


def load_studies(folders: list[Path] | None = None) -> tuple[list[Study], list[str]]:
    """Every valid study in ``folders`` (default :func:`study_folders`), by name, and the problems
    of the files left out (each also a warning)."""
    studies: dict[str, Study] = {}
    problems = []
    for folder in study_folders() if folders is None else folders:
        for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []:
            try:
                study = read_study(path)
                if study.name == DEFAULT or study.name in studies:
                    raise ValueError(f"{path}: a study named {study.name!r} exists already")
                studies[study.name] = study
            except ValueError as error:
                problems.append(f"{error} (this study is left out)")
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    return list(studies.values()), problems
