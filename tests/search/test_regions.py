"""Region parser: half-open rows then columns, `R,C`, `all`; one-line errors with the value."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cortex_cli.core.errors import CortexError
from cortex_cli.search.regions import Region, parse_region


def test_parse_rectangle_single_and_all():
    r = parse_region("4:8,4:8", 16)
    assert r == Region((4, 8), (4, 8))
    assert str(r) == "4:8,4:8"
    assert r.mask(16).sum() == 16 and r.size == 16
    assert parse_region(" 3 , 5 ", 16) == Region((3, 4), (5, 6))
    assert parse_region("ALL", 16) == Region((0, 16), (0, 16))
    assert parse_region("2:4,7", 8) == Region((2, 4), (7, 8))


def test_mask_and_positions_agree():
    r = parse_region("1:3,2:5", 6)
    mask = r.mask(6)
    assert mask.shape == (6, 6) and mask.dtype == torch.bool
    assert r.positions(6) == mask.reshape(-1).nonzero().flatten().tolist()
    assert r.positions(6) == [8, 9, 10, 14, 15, 16]


@pytest.mark.parametrize(
    "text, fragment, value",
    [
        ("4:8", "malformed", "'4:8'"),
        ("a:b,1:2", "malformed", "'a:b,1:2'"),
        ("1:2,3:4,5:6", "malformed", "'1:2,3:4,5:6'"),
        ("", "malformed", "''"),
        ("4:4,1:2", "empty", "4:4,1:2"),
        ("5:3,1:2", "empty", "5:3,1:2"),
        ("0:17,0:4", "outside the 16x16", "0:17,0:4"),
        ("-1:3,0:4", "outside the 16x16", "-1:3,0:4"),
        ("16,0", "outside the 16x16", "16:17,0:1"),
    ],
)
def test_invalid_regions_raise_one_line(text, fragment, value):
    with pytest.raises(CortexError) as info:
        parse_region(text, 16)
    message = str(info.value)
    assert fragment in message and value in message and "16x16" in message
    assert "\n" not in message


@st.composite
def regions(draw, grid=st.integers(1, 32)):
    m = draw(grid)
    r0 = draw(st.integers(0, m - 1))
    r1 = draw(st.integers(r0 + 1, m))
    c0 = draw(st.integers(0, m - 1))
    c1 = draw(st.integers(c0 + 1, m))
    return m, Region((r0, r1), (c0, c1))


@settings(max_examples=200, deadline=None)
@given(regions())
def test_parse_of_str_round_trips(case):
    m, region = case
    assert parse_region(str(region), m) == region
    assert int(region.mask(m).sum()) == region.size == len(region.positions(m))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12), st.integers(1, 32))
def test_arbitrary_text_parses_inside_grid_or_raises_cortex_error(text, m):
    try:
        region = parse_region(text, m)
    except CortexError as exc:
        assert "\n" not in str(exc)
        return
    assert 0 <= region.rows[0] < region.rows[1] <= m and 0 <= region.cols[0] < region.cols[1] <= m
