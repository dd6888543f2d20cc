"""jsonable.py: results become plain JSON values (what every --json output goes through)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cortex_cli.core.jsonable import to_jsonable


@dataclass
class Inner:
    token: int
    score: float


@dataclass
class Outer:
    path: Path
    pairs: tuple[Inner, ...]
    by_class: dict[int, list[float]] = field(default_factory=dict)


def test_nested_dataclasses_paths_tuples_and_scalars_become_json():
    value = Outer(Path("/tmp/a.png"), (Inner(3, 0.5), Inner(7, 0.25)), {1: [np.float32(0.5), torch.tensor(2.0)]})
    got = to_jsonable(value)
    assert got == {"path": "/tmp/a.png", "pairs": [{"token": 3, "score": 0.5}, {"token": 7, "score": 0.25}], "by_class": {"1": [0.5, 2.0]}}
    assert json.loads(json.dumps(got)) == got  # json.dumps would refuse a Path, a numpy float or a tensor
    assert type(got["by_class"]["1"][1]) is float and type(to_jsonable(np.int64(4))) is int


def test_plain_values_pass_through_and_a_dataclass_type_is_not_an_instance():
    assert to_jsonable({"a": None, "b": True, "c": "x", "d": [1, (2, 3)]}) == {"a": None, "b": True, "c": "x", "d": [1, [2, 3]]}
    assert to_jsonable(Inner) is Inner
