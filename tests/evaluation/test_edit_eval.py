"""The editing evaluation (Table 3): intervals, region rules, seeds, and runs on the tiny model."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from rich.table import Table

from cortex_cli.models import registry as model_registry
from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation.common import latest_variants
from cortex_cli.evaluation.edit_eval import EditEvalSettings, edit_seed, fixed_box, max_sum_window, run_edit_eval, window_around
from cortex_cli.evaluation.metrics import paired_bootstrap_ci, verdict
from cortex_cli.evaluation.report import tables_for
from cortex_cli.backends.base import to_pil
from cortex_cli.search.edit import edit_image
from cortex_cli.evaluation import edit_eval
from cortex_cli.extractors.registry import get_extractor
from cortex_cli.images.generation import default_sampler
from cortex_cli.search.concept_search import search_concept
from cortex_cli.images.pngmeta import save_png
from cortex_cli.search.token_selection import OptimizeSettings, optimize_batch
from cortex_cli.search.regions import Region, parse_region
from cortex_cli.core.seeding import image_key
from cortex_cli.store.database import open_store

from eval_helpers import register_small_extractor, toy_judge
from index_helpers import store_random_images


# -- the interval -------------------------------------------------------------------------------

def _noisy(n: int, seeds: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    b = torch.rand(n, seeds, generator=gen)
    return b + shift + 0.05 * torch.randn(n, seeds, generator=gen), b


def test_bootstrap_interval_says_win_loss_and_not_significant():
    better, base = _noisy(20, 3, 0.2)
    ci = paired_bootstrap_ci(better, base, seed=7)
    assert ci.low > 0 and ci.mean == pytest.approx(float((better - base).mean()))
    assert verdict(ci) == "win" and verdict(ci, higher_is_better=False) == "loss"
    same = paired_bootstrap_ci(base, base.clone(), seed=7)
    assert (same.low, same.high) == (0.0, 0.0) and verdict(same) == "n.s."
    worse, base = _noisy(20, 3, -0.2)
    assert verdict(paired_bootstrap_ci(worse, base, seed=7)) == "loss"
    # no clear difference: the interval straddles 0
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(30, generator=gen), torch.randn(30, generator=gen)
    assert verdict(paired_bootstrap_ci(a, b, seed=7)) == "n.s."
    # same seed, same interval; strata keep their counts
    assert paired_bootstrap_ci(better, base, seed=7) == paired_bootstrap_ci(better, base, seed=7)
    strat = paired_bootstrap_ci(better, base, seed=7, strata=["x"] * 10 + ["y"] * 10)
    assert strat.low > 0 and strat.n_units == 20
    with pytest.raises(ValueError, match="at least 2 units"):
        paired_bootstrap_ci(better, base, seed=7, strata=["x"] * 19 + ["y"])
    # one source: no interval, never significant
    lone = paired_bootstrap_ci(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2), seed=7)
    assert lone.mean == 1.0 and lone.low != lone.low and verdict(lone) == "n.s."


def test_bootstrap_resamples_sources_not_seeds():
    # one source far off, many identical seeds: averaging seeds first keeps n_units = sources
    a = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    ci = paired_bootstrap_ci(a, torch.zeros_like(a), seed=0, resamples=500)
    assert ci.n_units == 2 and ci.low == 0.0 and ci.high == 1.0


# -- the regions --------------------------------------------------------------------------------

def test_fixed_box_is_the_centre_window():
    assert fixed_box(16) == Region((6, 10), (6, 10)) and str(fixed_box(16)) == "6:10,6:10"
    assert fixed_box(8) == Region((3, 5), (3, 5))
    assert fixed_box(16).size == 16


def test_saliency_box_is_the_window_of_highest_summed_tsv():
    tsv = torch.zeros(16, 16)
    tsv[9:13, 2:6] = 1.0  # sum 16
    tsv[0, 15] = 10.0  # a single hot token: sum 10 in any window around it
    tsv[1:3, 12:14] = 0.5
    assert max_sum_window(tsv, 4) == Region((9, 13), (2, 6))
    flat = torch.ones(16, 16)  # ties: the first window in raster order
    assert max_sum_window(flat, 4) == Region((0, 4), (0, 4))


def test_window_around_centres_on_the_part_and_stays_inside():
    import numpy as np

    mask = np.zeros((64, 64), dtype=bool)
    mask[8:16, 40:48] = True  # centroid at token (3, 11) on a 16 grid
    assert str(window_around(mask, 16, 4)) == "1:5,9:13"
    corner = np.zeros((64, 64), dtype=bool)
    corner[0:2, 62:64] = True
    assert str(window_around(corner, 16, 4)) == "0:4,12:16"


def test_defaults_are_the_protocol():
    d = EditEvalSettings()
    assert d.images_per_direction >= 10 and d.opt_seeds >= 3 and d.steps == 150 and d.bootstrap == 2000
    assert d.regions == ("fixed",)  # the paper's box is the headline; saliency and oracle on request


# -- seeds and the batched optimiser ------------------------------------------------------------

def test_edit_seed_is_a_function_of_identities():
    key = str(image_key("tiny", 0, "test", 3, "k=1"))
    s = edit_seed("tiny", key, 1, "fixed", 0, 2)
    assert s == edit_seed("tiny", int(key), 1, "fixed", 0, 2)  # the key's value, not its type
    others = {edit_seed("tiny", key, 1, "fixed", 0, 1), edit_seed("tiny", key, 1, "saliency", 0, 2),
              edit_seed("tiny", key, 1, "fixed", 1, 2), edit_seed("tiny", key, 2, "fixed", 0, 2)}
    assert s not in others and len(others) == 4


# -- runs on the tiny model ---------------------------------------------------------------------

def _tiny_store(path: Path, files, *, unrelated: bool):
    config, ckpt, labels = files
    store = open_store(f"sqlite:///{path}")
    model = model_registry.add_model(store, "tiny", config, ckpt, str(labels))
    classes = model_registry.classes(store, model)
    if unrelated:  # rows that shift every later id
        store_random_images(store, model, classes[2], 3, split="test", vocab=40)
        store_random_images(store, model, classes[3], 2, split="train", vocab=40)
        store_random_images(store, model, classes[0], 2, split="val", vocab=40)
    for cls in classes[:2]:
        store_random_images(store, model, cls, 2, split="test", vocab=40)
    register_small_extractor(store, model, path.parent, "ce", "ce")
    return store, model, tuple(c.name for c in classes[:2])


SMALL = dict(images_per_direction=2, opt_seeds=2, steps=3, samples=2, bootstrap=200)


def _numbers(result) -> tuple:
    return (json.dumps([dataclasses.asdict(r) for r in result.rows], sort_keys=True),
            json.dumps([dataclasses.asdict(c) for c in result.comparisons], sort_keys=True),
            json.dumps([dataclasses.asdict(i) for i in result.items], sort_keys=True))


def test_edit_eval_on_generated_sources_is_history_independent(tiny_model_files, tmp_path):
    runs = []
    for name, unrelated in (("fresh", False), ("prefilled", True)):
        (tmp_path / name).mkdir()
        store, model, names = _tiny_store(tmp_path / name / "db.sqlite", tiny_model_files, unrelated=unrelated)
        settings = EditEvalSettings(pairs=((names[0], names[1]),), regions=("all",), **SMALL)
        runs.append(run_edit_eval(store, model, settings=settings, out_dir=tmp_path / name / "out", judges=[toy_judge()]))
        if unrelated:
            with pytest.raises(CortexError, match="oracle region needs ground-truth"):
                run_edit_eval(store, model, settings=dataclasses.replace(settings, regions=("oracle",)), out_dir=tmp_path, judges=[toy_judge()])
        store.close()
    fresh, prefilled = runs
    assert _numbers(fresh) == _numbers(prefilled)
    assert fresh.regions == ["fixed", "saliency"] and fresh.n_sources == 4 and fresh.opt_seeds == 2
    assert {(r.region, r.method) for r in fresh.rows} == {(k, m) for k in ("fixed", "saliency") for m in ("embedding", "token")}
    assert not any(r.oracle for r in fresh.rows)
    label = default_sampler(model_registry.load_model(model)).label()
    assert [it.key for it in fresh.items[:2]] == [str(image_key("tiny", fresh.items[0].source, "test", i, label)) for i in range(2)]
    for row in fresh.rows:  # eq. 10 at the final step
        e = row.effect
        assert e.delta_p_orig == pytest.approx(e.p_orig_after - e.p_orig) and e.delta_p_targ == pytest.approx(e.p_targ_after - e.p_targ)
    assert set(fresh.token_beats_embedding["toy"]["ce"]) == {"fixed", "saliency"}
    assert all(v in ("win", "loss", "n.s.") for v in fresh.token_beats_embedding["toy"]["ce"].values())
    assert all(it.regions["fixed"] == "6:10,6:10" for it in fresh.items)
    assert Path(fresh.plot_path).stat().st_size > 1000
    assert "seconds" not in json.loads(Path(fresh.json_path).read_text())


def test_cortex_edit_cortex_optimize_and_the_edit_eval_share_one_optimiser(tiny_model_files, tmp_path, monkeypatch):
    """The same image, region, target and seed give the same tokens through all three callers."""
    calls = []

    def spy(*args, **kwargs):  # the real batched optimiser, its inputs and outputs recorded
        out = optimize_batch(*args, **kwargs)
        calls.append((args, out.tokens))
        return out

    monkeypatch.setattr(edit_eval, "optimize_batch", spy)
    store, model, names = _tiny_store(tmp_path / "db.sqlite", tiny_model_files, unrelated=False)
    settings = EditEvalSettings(pairs=((names[0], names[1]),), methods=("token",), **{**SMALL, "images_per_direction": 1, "steps": 150})
    result = run_edit_eval(store, model, settings=settings, out_dir=tmp_path / "out", judges=[toy_judge()])
    (net, codebook, sources, masks, targets, seeds, opt), tokens = calls[0]
    changed = (tokens != sources).flatten(1).any(dim=1)
    # an edit that changed tokens when there is one (with this release's sampling and noise streams none of the
    # tiny setup's edits changes a token; the optimiser's own tests show it does change them)
    j = int(changed.nonzero()[0]) if changed.any() else 0
    i, k = divmod(j, settings.opt_seeds)  # edits run source by source, seed by seed
    item = result.items[i]
    assert seeds[j] == edit_seed(model.name, item.key, item.target, "fixed", settings.seed, k)
    region = parse_region(item.regions["fixed"], model.grid)
    png = tmp_path / "source.png"
    save_png(to_pil(model_registry.load_model(model).decode_tokens(sources[j][None]))[0], png, sources[j], model.name,
             {"class_id": item.source}, n_embed=model.n_embed)
    target = next(c for c in model_registry.classes(store, model) if c.class_id == item.target)
    # cortex edit of that image with that seed: the evaluation's tokens
    edited = edit_image(store, model, png, target, region, dataclasses.replace(opt, seed=seeds[j]), extractor_name="ce",
                        out_dir=tmp_path / "edit")
    assert torch.equal(torch.tensor(edited.result_tokens), tokens[j])
    # cortex optimize from that image: its restart is what the batched optimiser gives its seed, beside another edit
    search = search_concept(store, model, target, settings=OptimizeSettings(steps=150), extractor_info=get_extractor(store, model, "ce"),
                            region=region, init=png, restarts=1, out_dir=tmp_path / "search")
    batch = optimize_batch(net, codebook, sources[[j, 0]], masks[[j, 0]], [item.target, targets[0]], [search.restarts[0].seed, seeds[0]], opt)
    assert torch.equal(torch.tensor(search.tokens), batch.tokens[0]) and torch.equal(batch.tokens[1], tokens[0])
    store.close()


def test_edit_eval_on_world_sources_reports_the_oracle_apart(store, tiny_model, tmp_path, monkeypatch):
    from cortex_cli.miniworld import world

    # the tiny model dressed as a mini-world model: 64 px, 16x16 tokens; concepts 0 and 1 (the birds)
    monkeypatch.setattr(world, "concept_pairs", lambda: [(0, 1)])
    model = dataclasses.replace(tiny_model, labels="mini")
    register_small_extractor(store, model, tmp_path, "ce", "ce")
    result = run_edit_eval(store, model, settings=EditEvalSettings(regions=("fixed", "saliency", "oracle"), **SMALL),
                           out_dir=tmp_path, judges=[toy_judge()])
    assert result.regions == ["fixed", "saliency", "oracle"]
    assert {r.region for r in result.rows if r.oracle} == {"oracle"} and all(r.oracle == (r.region == "oracle") for r in result.rows)
    assert all(c.oracle == (c.region == "oracle") for c in result.comparisons) and len(result.comparisons) == 3
    first = result.items[0]
    assert first.key == "world:edit:0:0" and first.target == 1
    sample = world.sample(0, 0, "edit")
    assert first.regions["oracle"] == str(window_around(sample.part_mask, 16, 4))
    assert set(first.regions) == {"fixed", "oracle", "saliency/ce"}
    # the report: the oracle in its own table, every table within 80 columns
    specs = tables_for("edit", latest_variants(store, model)["edit"][0].result)
    oracle_tables = [s for s in specs if "ORACLE" in s.title]
    assert len(oracle_tables) == 1 and {row[2] for row in oracle_tables[0].rows} == {"oracle"}
    headline = next(s for s in specs if s.title.startswith("after step"))
    assert {row[2] for row in headline.rows} == {"fixed", "saliency"}
    assert any(row[2] == "oracle (UB)" for s in specs if s.title.startswith("token - embedding") for row in s.rows)
    for spec in specs:
        t = Table(show_lines=False)
        for c in spec.columns:
            t.add_column(c)
        for row in spec.rows:
            t.add_row(*row)
        console = Console(file=io.StringIO(), width=200)
        console.print(t)
        assert console.measure(t).maximum <= 80, spec.title


# -- realism: the edits' prior NLL against the generated range -----------------------------------

def test_edit_eval_reports_the_prior_nll_of_its_edits_per_method(tiny_model_files, tmp_path, monkeypatch):
    from cortex_cli.search import realism

    store, model, names = _tiny_store(tmp_path / "db.sqlite", tiny_model_files, unrelated=False)
    vqgm = model_registry.load_model(model)
    seen = []  # every batch of edited grids the evaluation scored, with their targets
    real_prior = type(vqgm).prior_nll

    def spy(self, tokens, classes, batch_size=32):
        out = real_prior(self, tokens, classes, batch_size)
        seen.append((tokens.clone(), [c.class_id for c in classes], out))
        return out

    monkeypatch.setattr(type(vqgm), "prior_nll", spy)
    settings = EditEvalSettings(pairs=((names[0], names[1]),), **{**SMALL, "realism_images": 3})
    result = run_edit_eval(store, model, settings=settings, out_dir=tmp_path / "out", judges=[toy_judge()])
    real = result.realism
    assert real is not None and real.images_per_class == 3 and real.margin == realism.MARGIN
    # the generated range of each target class is that of its generated train images
    assert sorted(g.class_id for g in real.generated) == [0, 1]
    for g in real.generated:
        expected = realism.generated_range(store, model, model_registry.classes(store, model)[g.class_id], 3)
        assert dataclasses.asdict(g) == pytest.approx(dataclasses.asdict(expected))
    rows = {(x.region, x.method): x for x in real.rows}
    assert set(rows) == {("fixed", "embedding"), ("fixed", "token")}
    assert rows[("fixed", "embedding")].n_edits == 4 and rows[("fixed", "token")].n_edits == 8  # 4 sources x 2 seeds
    # each row's mean is the mean of that method's edited grids' NLL under their targets
    targets = [it.target for it in result.items]
    scored = [(c, o) for _, c, o in seen if c in (targets, [x for x in targets for _ in range(2)])]
    # in order: the embedding edits (one per source), the token edits (source-major, 2 seeds), then the sources
    assert [len(c) for c, _ in scored] == [4, 8, 4]
    by_len = {8: scored[1][1], 4: scored[0][1]}
    assert rows[("fixed", "embedding")].mean_nll == pytest.approx(float(by_len[4].mean()), rel=1e-5)
    assert rows[("fixed", "token")].mean_nll == pytest.approx(float(by_len[8].mean()), rel=1e-5)
    assert real.source_mean_nll == pytest.approx(float(scored[2][1].mean()), rel=1e-5)
    ranges = {g.class_id: g for g in real.generated}
    flagged = [realism.flag(float(v), ranges[targets[j // 2]]) == realism.ADVERSARIAL for j, v in enumerate(by_len[8])]
    assert rows[("fixed", "token")].adversarial_share == pytest.approx(sum(flagged) / 8)
    # the rise over each edit's own source (seeds averaged per source), the sources' own flags, token - embedding paired
    sources = scored[2][1].double()
    token_rise = (by_len[8].double().reshape(4, 2) - sources[:, None]).mean(1)
    embedding_rise = by_len[4].double() - sources
    assert rows[("fixed", "token")].mean_delta_nll == pytest.approx(float(token_rise.mean()), rel=1e-6)
    assert rows[("fixed", "embedding")].mean_delta_nll == pytest.approx(float(embedding_rise.mean()), rel=1e-6)
    source_flags = [realism.flag(float(v), ranges[t]) == realism.ADVERSARIAL for v, t in zip(sources, targets)]
    assert real.source_adversarial_share == pytest.approx(sum(source_flags) / 4)
    [cmp] = real.comparisons
    assert cmp.region == "fixed" and not cmp.oracle and cmp.extractor == rows[("fixed", "token")].extractor
    assert cmp.delta_nll.mean == pytest.approx(float((token_rise - embedding_rise).mean()), rel=1e-6)
    assert cmp.delta_nll.low <= cmp.delta_nll.mean <= cmp.delta_nll.high and cmp.delta_nll.n_units == 4
    assert cmp.verdict == ("win" if cmp.delta_nll.high < 0 else "loss" if cmp.delta_nll.low > 0 else "n.s.")
    # JSON and report: a new key, a small table
    stored = json.loads(Path(result.json_path).read_text())
    assert stored["realism"]["rows"] and "rows" in stored and "comparisons" in stored
    specs = tables_for("edit", latest_variants(store, model)["edit"][0].result)
    table = next(s for s in specs if s.title.startswith("realism"))
    assert {(row[1], row[2]) for row in table.rows} == {("fixed", "embedding"), ("fixed", "token")}
    assert table.columns == ["extr.", "region", "method", "edits", "NLL", "rise", "adversarial"]
    assert any(s.title.startswith("realism: token - embedding") and len(s.rows) == 1 for s in specs)

    # no realism when asked for none, or when the backend has no prior NLL
    off = run_edit_eval(store, model, settings=dataclasses.replace(settings, realism_images=0), out_dir=tmp_path / "o2",
                        judges=[toy_judge()])
    assert off.realism is None and not any(s.title.startswith("realism") for s in tables_for("edit", json.loads(Path(off.json_path).read_text())))
    monkeypatch.setattr(type(vqgm), "prior_nll", lambda self, t, c, batch_size=32: (_ for _ in ()).throw(CortexError("not available")))
    assert run_edit_eval(store, model, settings=settings, out_dir=tmp_path / "o3", judges=[toy_judge()]).realism is None
    with pytest.raises(CortexError, match="--realism-images"):
        run_edit_eval(store, model, settings=dataclasses.replace(settings, realism_images=1), out_dir=tmp_path, judges=[toy_judge()])
    store.close()
