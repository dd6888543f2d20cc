"""`search_concept` (paper §3.4, input-independent) and `cortex optimize` through CliRunner."""

from __future__ import annotations

import json

import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

from cortex_cli.core.errors import CortexError
from cortex_cli.models import registry as model_registry
from cortex_cli.cli import app
from cortex_cli.search.concept_search import DEFAULT_K, DEFAULT_RESTARTS, noise_grid, search_concept, search_named, t_star_of
from cortex_cli.search.token_selection import OptimizeSettings
from cortex_cli.images.pngmeta import read_png
from cortex_cli.search.regions import parse_region
from cortex_cli.store.database import open_store
from cortex_cli.store.schema import ClassRow, ConceptSearchRow, ImageRow, ModelRow
from cortex_cli.images.token_blobs import unpack_tokens

from tests.search.test_edit import register_tiny_ce

TARGET_TOKEN, POSITION = 17, (3, 7)
REGION = "2:4,5:9"  # rows 2-3, columns 5-8: holds (3, 7); its transpose (rows 5-8, columns 2-3) does not


class SpotExtractor(torch.nn.Module):
    """Class 1's logit is 10 - ||E[:, 3, 7] - C_17||^2 / var(C): highest iff position (3, 7) holds token 17."""

    def __init__(self, codebook: torch.Tensor, n_classes: int = 4):
        super().__init__()
        self.register_buffer("goal", codebook[TARGET_TOKEN].detach().clone())
        self.scale = float(codebook.detach().pow(2).sum(dim=1).mean())
        self.n_classes = n_classes

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        r, c = POSITION
        dist = (embedding[:, :, r, c] - self.goal).pow(2).sum(dim=1) / self.scale
        logits = torch.zeros(embedding.shape[0], self.n_classes, device=embedding.device)
        logits[:, 1] = 10.0 - dist
        return logits


def _rows(store):
    with store.session() as s:
        return s.scalars(select(ConceptSearchRow).order_by(ConceptSearchRow.restart)).all()


def test_t_star_orders_by_positions_then_token_id():
    tokens = torch.tensor([[5, 5, 9], [2, 9, 2], [7, 7, 7]])
    mask = torch.tensor([[True, True, True], [True, True, True], [False, False, False]])
    assert [(e.token, e.positions) for e in t_star_of(tokens, mask)] == [(2, 2), (5, 2), (9, 2)]
    mask[2, 0] = True
    assert [(e.token, e.positions) for e in t_star_of(tokens, mask)][:1] == [(2, 2)] and len(t_star_of(tokens, mask)) == 4


def test_random_start_finds_the_rewarded_token_at_its_position_only_inside_the_region(store, tiny_model, tmp_path):
    info = register_tiny_ce(store, tiny_model, tmp_path)
    codebook = model_registry.load_model(tiny_model).codebook.detach()
    cls = model_registry.resolve_class(store, tiny_model, 1)
    region = parse_region(REGION, tiny_model.grid)
    mask = region.mask(tiny_model.grid)
    settings = OptimizeSettings(steps=150, alpha=0.0, seed=3)
    result = search_concept(store, tiny_model, cls, settings=settings, extractor_info=info, region=region, init="random",
                            restarts=2, out_dir=tmp_path / "out", extractor=SpotExtractor(codebook))
    tokens = torch.tensor(result.tokens)
    for r in result.restarts:  # the start holds another token at p, so only the search can put it there
        assert int(noise_grid(tiny_model, 3, r.restart)[POSITION]) != TARGET_TOKEN
    assert int(tokens[POSITION]) == TARGET_TOKEN
    assert TARGET_TOKEN in [e.token for e in result.t_star]
    # eq. 9 over the region only: T* counts exactly the region's positions; outside keeps the start
    assert sum(e.positions for e in result.t_star) == region.size == 8
    assert [(e.token, e.positions) for e in result.t_star] == [(e.token, e.positions) for e in t_star_of(tokens, mask)]
    assert torch.equal(tokens[~mask], noise_grid(tiny_model, 3, result.best_restart)[~mask])
    assert result.objective == max(r.objective for r in result.restarts) and result.objective > 9.99
    assert result.comparison is None and "cortex index" in result.hint
    rows = _rows(store)
    assert [r.restart for r in rows] == [0, 1]
    best = rows[result.best_restart]
    assert torch.equal(unpack_tokens(best.tokens, tiny_model.n_embed, tiny_model.grid), tokens)
    assert json.loads(best.t_star)[0] in [[e.token, e.positions] for e in result.t_star]
    png = read_png(result.output_path)
    assert torch.equal(png.tokens, tokens) and png.meta["class_id"] == 1 and result.strip_path.is_file()


def _search(store, model, info, tmp_path, cls="goldfinch", **kw):
    return search_concept(
        store, model, model_registry.resolve_class(store, model, cls), settings=OptimizeSettings(steps=8, seed=5),
        extractor_info=info, region=parse_region("4:8,4:10", model.grid), init=kw.pop("init", "noise"), restarts=2,
        out_dir=tmp_path, **kw,
    )


def test_search_named_resolves_names_and_takes_the_defaults(store, tiny_model, tmp_path):
    info = register_tiny_ce(store, tiny_model, tmp_path)
    settings = OptimizeSettings(steps=4, seed=5)
    named = search_named(store, tiny_model, "goldfinch", settings=settings, region="4:8,4:10", out_dir=tmp_path / "a")
    direct = search_concept(store, tiny_model, model_registry.resolve_class(store, tiny_model, 0), settings=settings, extractor_info=info,
                            region=parse_region("4:8,4:10", tiny_model.grid), out_dir=tmp_path / "b")
    assert (named.search_key, named.tokens, named.region, named.init) == (direct.search_key, direct.tokens, "4:8,4:10", "random")
    assert len(named.restarts) == DEFAULT_RESTARTS and direct.reused == DEFAULT_RESTARTS  # the same search: stored once
    assert named.params == direct.params and DEFAULT_K == 20
    with pytest.raises(CortexError, match="has no extractor named 're'"):
        search_named(store, tiny_model, 0, settings=settings, extractor="re")
    with pytest.raises(CortexError, match="outside the 16x16 token grid"):
        search_named(store, tiny_model, 0, settings=settings, region="14:18,0:4")


def test_reruns_insert_nothing_and_results_ignore_unrelated_rows(store, tiny_model, tiny_model_files, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    info = register_tiny_ce(store, tiny_model, tmp_path / "a")
    first = _search(store, tiny_model, info, tmp_path / "a")
    again = _search(store, tiny_model, info, tmp_path / "a")
    assert len(_rows(store)) == 2 and (first.computed, again.computed, again.reused) == (2, 0, 2)
    assert again.tokens == first.tokens and again.search_key == first.search_key
    assert again.output_path == first.output_path

    # another database whose ids differ and which held other rows first
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    with other.session() as s, s.begin():
        decoy = ModelRow(name="decoy", config_path="c", ckpt_path="k", config_hash="0" * 64, n_embed=64, embed_dim=16,
                         grid=16, image_size=64, labels="")
        s.add(decoy)
        s.flush()
        s.add_all(ClassRow(model_id=decoy.id, class_id=i, name=f"decoy {i}", synonyms="") for i in range(5))
    config, ckpt, labels = tiny_model_files
    model_b = model_registry.add_model(other, "tiny", config, ckpt, str(labels))
    info_b = register_tiny_ce(other, model_b, tmp_path / "b")  # the same weights, another file
    grouse = model_registry.resolve_class(other, model_b, "black grouse")
    with other.session() as s, s.begin():
        s.add(ImageRow(model_id=model_b.id, class_pk=grouse.pk, split="train", seed=0, sampler="x", tokens=b"\0\0" * 256))
    _search(other, model_b, info_b, tmp_path / "b", cls="black grouse", init="random")
    pk = {m.id: model_registry.resolve_class(st, m, "goldfinch").pk for st, m in ((store, tiny_model), (other, model_b))}
    assert model_b.id != tiny_model.id and pk[model_b.id] != pk[tiny_model.id]
    second = _search(other, model_b, info_b, tmp_path / "b")
    assert second.search_key == first.search_key
    assert second.tokens == first.tokens
    assert [r.seed for r in second.restarts] == [r.seed for r in first.restarts]
    assert [r.objective for r in second.restarts] == pytest.approx([r.objective for r in first.restarts])
    other.close()


def _index_randomly(db_url, class_name):
    """Store a few random images of a mini class and a saliency run over them (fast stand-in for `cortex index`)."""
    from cortex_cli.extractors.registry import ensure_bundled_extractors, get_extractor
    from cortex_cli.index.build import ensure_run, index_rows
    from cortex_cli.store.index import write_index
    from cortex_cli.attribution import SaliencySettings

    from index_helpers import store_random_images

    store = open_store(db_url)
    model_registry.ensure_bundled(store)
    ensure_bundled_extractors(store)
    model = model_registry.get_model(store)
    cls = model_registry.resolve_class(store, model, class_name)
    ids = store_random_images(store, model, cls, 3, vocab=model.n_embed)
    run = ensure_run(store, model, get_extractor(store, model, "ce").id, SaliencySettings().validate())
    tokens = torch.stack([unpack_tokens(b, model.n_embed, model.grid) for b in _image_blobs(store, ids)])
    tsv = torch.rand(len(ids), model.grid, model.grid, generator=torch.Generator().manual_seed(0))
    write_index(store, run, [index_rows(cls.pk, ids, tokens, tsv, 20)])
    store.close()


def _image_blobs(store, ids):
    with store.session() as s:
        return [s.get(ImageRow, i).tokens for i in ids]


def test_cli_json_reports_overlap_and_writes_png(db_url, tmp_path):
    _index_randomly(db_url, "red-capped bird")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["--db", db_url, "optimize", "--class", "red-capped bird", "--steps", "20", "--restarts", "1",
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["class_name"] == "red-capped bird" and data["region"] == "0:16,0:16" and data["init"] == "random"
    assert read_png(data["output_path"]).tokens.tolist() == data["tokens"]
    c = data["comparison"]
    assert data["hint"] is None and c["k"] == 20 and len(c["salient_tokens"]) == 20
    optimised_top = [e["token"] for e in data["t_star"][:20]]
    assert c["overlap_tokens"] == [t for t in c["salient_tokens"] if t in optimised_top] and c["overlap"] == len(c["overlap_tokens"])
    assert c["optimised_in_salient"] == sum(e["salient_rank"] is not None for e in data["t_star"])
    assert sum(e["positions"] for e in data["t_star"]) == 256
    # the table output prints the stored prior NLL (a random start: no start grid to compare with)
    shown = CliRunner().invoke(app, ["--db", db_url, "optimize", "--class", "red-capped bird", "--steps", "20", "--restarts", "1",
                                     "--out", str(out), "--quiet"])
    assert data["prior_nll"] is not None and data["prior_nll_source"] is None
    assert f"prior NLL under red-capped bird: result {data['prior_nll']:.3f} nats per token" in shown.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--region", "4:20,0:4"], "outside the 16x16 token grid"),
    (["--region", "four"], "malformed"),
    (["--init", "nowhere.png"], "neither random, noise nor an existing image"),
    (["--restarts", "0"], "--restarts must be >= 1"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(db_url, tmp_path, args, fragment):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["--db", db_url, "optimize", "--class", "red-capped bird", "--steps", "5", "--out", str(out), *args])
    assert res.exit_code == 1
    assert fragment in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
