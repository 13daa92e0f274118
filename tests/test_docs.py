"""The documentation's API reference covers the public surface: every name in ``optix.__all__``
(and in ``optix.schedules``, ``optix.sharding`` and ``optix.compare``) is in exactly one group of
``docs/_api_groups.py``, so a new public name cannot be left out of the docs. Needs no sphinx:
the build itself (``.ci/run``) checks the docstrings render without warnings.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys
import tomllib

import pytest

import optix
import optix.compare
import optix.schedules
import optix.sharding

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_groups():
    spec = importlib.util.spec_from_file_location("_api_groups", ROOT / "docs" / "_api_groups.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


api_groups = _load_groups()


def test_every_public_name_is_in_exactly_one_api_group():
    groups = api_groups.groups()
    by_module: dict[str, list[str]] = {}
    for group in api_groups.GROUPS:
        by_module.setdefault(group.module, []).extend(groups[group.key])
    for module in (optix.schedules, optix.sharding, optix.toolkit, optix.compare):
        # a name optix itself exports is documented there (the toolkit's HyperparamState)
        own = [n for n in module.__all__ if n not in optix.__all__]
        assert sorted(by_module[module.__name__]) == sorted(own), module.__name__
    submodules = {"schedules", "sharding", "toolkit"}
    listed = by_module["optix"]
    assert len(listed) == len(set(listed)), "a name is in two groups"
    assert set(listed) == set(optix.__all__) - submodules
    assert all(groups.values()), "an empty API group"


def test_a_name_no_rule_places_is_refused():
    with pytest.raises(api_groups.UnclassifiedNameError, match="optix.mystery"):
        api_groups.classify("mystery", 3.0)
    with pytest.raises(api_groups.UnclassifiedNameError, match="optix.mystery"):
        api_groups.classify("mystery", lambda x: x)


def test_pages_are_generated_with_one_entry_per_name(tmp_path):
    api_groups.write_pages(str(tmp_path))
    text = {p.stem: p.read_text() for p in tmp_path.glob("*.rst")}
    assert set(text) == {"index"} | {g.key for g in api_groups.GROUPS}
    for key, names in api_groups.groups().items():
        documented = re.findall(r"^\.\. auto(?:function|class|data):: (\S+)$", text[key], re.M)
        assert documented == names, key
    assert ".. autofunction:: adam" in text["optimizers"]
    assert ".. autoclass:: ScaleByAdamState" in text["state_types"]


def test_docs_extra_has_what_the_build_needs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    conf = (ROOT / "docs" / "conf.py").read_text()
    names = {r.split(">")[0].split("=")[0].strip() for r in extras["docs"]}
    assert {"sphinx", "myst-parser", "furo"} <= names
    assert '"myst_parser"' in conf and 'html_theme = "furo"' in conf
