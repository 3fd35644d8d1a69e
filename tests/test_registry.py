"""One registry shape for backends, export formats, searchers, tasks and space presets: each name
resolves to what implements it, and an unknown name is one error listing the names there are."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest

from hwnas.deploy.formats import FORMATS
from hwnas.deploy.formats.base import Format
from hwnas.errors import HwnasError
from hwnas.hardware.backends.base import Backend
from hwnas.hardware.device import BACKENDS
from hwnas.registry import Registry
from hwnas.search.searchers import SEARCHERS, Searcher
from hwnas.space import tasks
from hwnas.space.spec import PRESETS
from hwnas.train.task import TASKS, make_task


def test_an_unknown_name_is_one_error_listing_the_names():
    registry = Registry("widget", {"a": 1, "b": "math:pi"}, listing="widgets", hint="; or build one")
    assert registry.get("a") == 1 and registry.get("b") == pytest.approx(3.14159, abs=1e-5)  # imported on first get
    with pytest.raises(HwnasError, match=r"^unknown widget 'c'; widgets: a, b; or build one$"):
        registry.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", 2)
    assert registry.register("c")(len) is len and registry.names() == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("registry", "base"),
    [(BACKENDS, Backend), (FORMATS, Format), (SEARCHERS, Searcher), (TASKS, object)],
    ids=["backends", "formats", "searchers", "tasks"],
)
def test_every_registered_name_resolves_to_its_implementation(registry, base):
    for name in registry:
        assert issubclass(registry.get(name), base), name


def test_searchers_are_dataclasses_whose_fields_are_their_settings():
    for name in SEARCHERS:
        fields = dataclasses.fields(SEARCHERS.get(name))
        assert all(f.default is not dataclasses.MISSING for f in fields), name  # every setting has a default


def test_tasks_registry_covers_every_task_name_and_presets_every_packaged_file():
    assert sorted(TASKS.names()) == sorted(tasks.TASKS)
    for name in ("saliency/noblur", "sod/unet+focus", "segmentation+aux"):
        assert make_task(name, 19).name == name
    folder = resources.files("hwnas.space") / "presets"
    assert sorted(PRESETS.names()) == sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
