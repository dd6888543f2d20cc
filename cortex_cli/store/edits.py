"""Token-level edits: rows of `edits`, written together with the edit's files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from .database import Store
from .schema import EditRow


@dataclass(frozen=True)
class NewEdit:
    """The stored fields of an edit, known before its files are written."""

    model_id: int
    extractor_id: int | None
    source_class: int | None
    target_class: int
    method: str
    region: str
    source_tokens: bytes
    result_tokens: bytes
    params: str  # JSON
    probabilities: str  # JSON
    source_path: str
    target: str = "class"  # what was optimised: 'class' (target_class's logit) or a concept's target key


@dataclass
class PendingEdit:
    """An edit row inserted but not committed: its id names the files; set `output_path` once they exist."""

    id: int
    output_path: str = ""


@contextmanager
def pending_edit(store: Store, edit: NewEdit) -> Iterator[PendingEdit]:
    """Insert an edit row and commit it (with `output_path`) only if the block succeeds; an exception rolls it back."""
    with store.session() as s, s.begin():
        row = EditRow(**asdict(edit))
        s.add(row)
        s.flush()
        pending = PendingEdit(row.id)
        yield pending
        row.output_path = pending.output_path


__all__ = ["NewEdit", "PendingEdit", "pending_edit"]
