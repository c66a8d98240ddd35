"""The docs name everything the code location has, enumerated from the code: every asset and asset
check of the definitions in docs/formats.md (the one asset table), every field of every resource in
the README's settings table (the one place that lists settings; each field's help is its
``description`` in the code)."""

import re
import warnings
from pathlib import Path

import dagster as dg
import pytest

from quanta_assets.settings import SettingsResource

warnings.filterwarnings("ignore", category=dg.BetaWarning)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def defs():
    from quanta_assets.definitions import defs

    return defs


def named(text: str) -> set[str]:
    """Every name written as code (between backticks) in ``text``."""
    return set(re.findall(r"`([^`\s]+)`", text))


def settings_rows(markdown: str) -> dict[str, set[str]]:
    """The README's settings table: resource key → the names in its row's fields cell."""
    section = markdown.split("## Settings at a glance", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) >= 2:
            for key in named(cells[0]):
                rows[key] = named("|".join(cells[1:]))
    return rows


def missing_fields(resources: dict, rows: dict[str, set[str]]) -> list[str]:
    """``key.field`` of every resource field that its row does not name (``key`` when no row)."""
    missing = []
    for key, resource in sorted(resources.items()):
        if key not in rows:
            missing.append(key)
            continue
        missing += [f"{key}.{f}" for f in type(resource).model_fields if f not in rows[key]]
    return missing


def _subclasses(cls: type) -> set[type]:
    return {s for c in cls.__subclasses__() for s in {c, *_subclasses(c)}}


def test_every_asset_and_check_is_in_formats_md(defs):
    graph = defs.resolve_asset_graph()
    keys = {k.path[-1] for k in graph.materializable_asset_keys}  # a study's assets: its prefix + the name
    checks = {k.name for k in graph.asset_check_keys}
    assert len(keys) >= 10 and len(checks) >= 4
    documented = named((REPO / "docs" / "formats.md").read_text())
    assert not (keys | checks) - documented, f"not in docs/formats.md: {sorted((keys | checks) - documented)}"


def test_every_resource_field_is_in_the_readme_settings_table(defs):
    configurable = (dg.ConfigurableResource, dg.ConfigurableIOManager)
    # a study's settings (``<study>__cluster_settings``) are the documented resource's class again
    resources = {k: r for k, r in defs.resources.items() if isinstance(r, configurable) and "__" not in k}
    assert {"pile", "similarity_settings", "compute", "cache"} <= set(resources)
    used = {type(r) for r in resources.values()}
    unused = {c.__name__ for c in _subclasses(SettingsResource) if not c.__name__.startswith("_")} - {
        c.__name__ for c in used}
    assert not unused, f"settings classes not in the definitions' resources: {sorted(unused)}"
    missing = missing_fields(resources, settings_rows((REPO / "README.md").read_text()))
    assert not missing, f"not in README's settings table: {missing}"


def test_the_settings_check_finds_a_missing_field():
    class Toy(dg.ConfigurableResource):
        alpha: int = 1
        beta: int = 2

    readme = "## Settings at a glance\n\n| key | fields |\n|---|---|\n| `toy` | `alpha` (1) |\n\n## Next\n"
    assert settings_rows(readme) == {"toy": {"alpha"}}
    assert missing_fields({"toy": Toy(), "other": Toy()}, settings_rows(readme)) == ["other", "toy.beta"]
