import pytest
from sqlalchemy import select

from cortex_cli.store.edits import NewEdit, pending_edit
from cortex_cli.store.schema import EditRow

from store_rows import add_model


def _edit(model) -> NewEdit:
    return NewEdit(model_id=model.id, extractor_id=None, source_class=0, target_class=1, method="token", region="0:2,0:2",
                   source_tokens=b"\0\0", result_tokens=b"\1\0", params="{}", probabilities="[]", source_path="in.png")


def _rows(store):
    with store.session() as s:
        return [(r.id, r.output_path) for r in s.scalars(select(EditRow).order_by(EditRow.id))]


def test_the_row_commits_with_its_output_path(store):
    model = add_model(store)
    with pending_edit(store, _edit(model)) as row:
        assert row.id > 0
        row.output_path = "out.png"
    assert _rows(store) == [(row.id, "out.png")]


def test_an_exception_in_the_block_rolls_the_row_back(store):
    model = add_model(store)
    with pytest.raises(RuntimeError), pending_edit(store, _edit(model)):
        raise RuntimeError("the files could not be written")
    assert _rows(store) == []
