"""evaluation/tables.py: the cells every evaluation's tables share, and a result's first table as rows."""

from __future__ import annotations

from cortex_cli.evaluation.tables import TableSpec, first_table_rows, interval, method_label, num, pct, signed, signed_pct


def test_numbers_print_with_their_digits_and_anything_else_as_n_a():
    assert num(0.12345) == "0.123" and num(2, 1) == "2.0" and num(-0.5, 2) == "-0.50"
    assert pct(0.1234) == "12.3%" and signed_pct(-0.05) == "-5.0%" and signed_pct(0.25) == "+25.0%"
    assert signed(0.5) == "+0.50" and signed(-0.125) == "-0.12"
    for missing in (None, float("nan"), "x"):
        assert num(missing) == pct(missing) == signed_pct(missing) == signed(missing) == "n/a"


def test_an_interval_prints_signed_bounds():
    assert interval({"low": -0.01234, "high": 0.2, "mean": 0.1}) == "[-0.012, +0.200]"


def test_selections_are_labelled_as_the_report_names_them():
    assert [method_label(m) for m in ("ce", "ce/gradient", "random", "baseline", "specific", "baseline@re", "frequency")] == [
        "CORTEX CE", "CORTEX CE/GRADIENT", "random", "baseline (frequency)", "baseline (specific)", "baseline cut to n of RE",
        "frequency baseline"]


def test_the_first_table_becomes_rows_keyed_by_its_columns():
    specs = [TableSpec("t", ["judge", "P"], [["toy", "0.5"], ["vit", "0.7"]]), TableSpec("other", ["x"], [["1"]])]
    assert first_table_rows(specs) == [{"judge": "toy", "P": "0.5"}, {"judge": "vit", "P": "0.7"}]
