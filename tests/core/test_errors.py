"""errors.py: CortexError, and first_line, the one way a wrapped exception joins a CortexError's one line."""

from __future__ import annotations

import pytest

from cortex_cli.core.errors import CortexError, first_line


def test_first_line_is_the_first_non_empty_line_stripped():
    assert first_line(ValueError("\n   \n  bad key 'x'  \nin config.yaml, line 3\n")) == "bad key 'x'"
    assert first_line(OSError("one line")) == "one line"


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("  \n\t\n")) == "RuntimeError"


def test_a_cortex_error_wrapping_a_multi_line_cause_is_one_line():
    cause = ValueError("Missing key model\n    full_key: model\n    object_type=dict")
    with pytest.raises(CortexError) as caught:
        try:
            raise cause
        except ValueError as exc:
            raise CortexError(f"config.yaml is not a taming config ({first_line(exc)})") from exc
    assert str(caught.value) == "config.yaml is not a taming config (Missing key model)"
    assert caught.value.__cause__ is cause
    assert isinstance(caught.value, Exception) and not isinstance(caught.value, (ValueError, RuntimeError))
