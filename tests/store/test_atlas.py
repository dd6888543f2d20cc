"""store/atlas.py: the atlas's reads equal a recount in Python of the same rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import select

from cortex_cli.atlas import PageSettings, build_atlas
from cortex_cli.attribution import SaliencySettings
from cortex_cli.index.rankings import top_tokens
from cortex_cli.store import atlas as atlas_store
from cortex_cli.store.schema import RunTokenCountRow, SalientTokenRow

from index_helpers import index_three_classes

SALIENCY = SaliencySettings(samples=2, top_n=8)
TINY = PageSettings(top_k=1, crops=1, overlays=1, context_classes=1, context_crops=1, neighbours=0, cross_class=1)


@pytest.mark.both_backends
def test_atlas_reads_equal_a_python_recount(store, tiny_model, tmp_path, backend):
    info, classes = index_three_classes(store, tiny_model, SALIENCY)
    run_id = top_tokens(store, tiny_model, classes[0], k=1).run_id
    with store.session() as s:
        rows = s.execute(select(SalientTokenRow.image_id, SalientTokenRow.class_pk, SalientTokenRow.position, SalientTokenRow.tsv,
                                SalientTokenRow.rank, SalientTokenRow.token)).all()
        counts = s.execute(select(RunTokenCountRow.token, RunTokenCountRow.class_pk, RunTokenCountRow.salient,
                                  RunTokenCountRow.occurrences, RunTokenCountRow.salient_images)).all()
    token = max({r.token for r in rows}, key=lambda t: (sum(r.token == t for r in rows), -t))
    best: dict[int, tuple] = {}
    for r in rows:
        if r.token == token and r.class_pk == classes[0].pk:
            if r.image_id not in best or (r.tsv, -r.rank) > (best[r.image_id].tsv, -best[r.image_id].rank):
                best[r.image_id] = r
    expected = sorted(best.values(), key=lambda r: (-r.tsv, r.image_id))[:3]
    found = atlas_store.strongest_occurrences(store, run_id, "train", token, 3, class_pk=classes[0].pk)
    assert [(o.image_id, o.position, o.rank) for o in found] == [(r.image_id, r.position, r.rank) for r in expected]
    assert [o.tsv for o in found] == pytest.approx([r.tsv for r in expected])
    anywhere = atlas_store.strongest_occurrences(store, run_id, "train", token, 100)
    assert len({o.image_id for o in anywhere}) == len(anywhere) == len({r.image_id for r in rows if r.token == token})

    some = sorted({r.image_id for r in rows})[:3]
    assert atlas_store.top_positions(store, run_id, some, 2) == {
        i: [r.position for r in sorted((r for r in rows if r.image_id == i and r.rank < 2), key=lambda r: r.rank)] for i in some}

    per_token = defaultdict(lambda: [0, 0, 0, 0])
    for t, _, salient, occurrences, salient_images in counts:
        per_token[t][0] += salient > 0
        per_token[t][1] += occurrences > 0
        per_token[t][2] += salient
        per_token[t][3] += salient_images
    spread = atlas_store.token_spread(store, run_id, "train")
    assert {s.token: [s.salient_classes, s.occurrence_classes, s.salient, s.salient_images] for s in spread} == dict(per_token)
    assert [s.token for s in spread] == sorted(per_token, key=lambda t: (-per_token[t][0], -per_token[t][1], t))
    assert atlas_store.indexed_classes(store, run_id, "train") == {c.pk: 5 for c in classes[:3]}
    assert atlas_store.tokens_of_classes(store, run_id, "train", [classes[1].pk]) == {t for t, pk, *_ in counts if pk == classes[1].pk}

    if backend != "sqlite":  # the other tests build on SQLite; here the whole atlas builds on this backend too
        result = build_atlas(store, tiny_model, tmp_path / "site", classes=[classes[1]], settings=TINY)
        assert result.concepts == 1 and (tmp_path / "site" / "concepts" / "1-water-ouzel.html").is_file()
