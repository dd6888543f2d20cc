"""`cortex report`: the latest stored result of each evaluation in one Markdown file, opened by the trust summary.

Each evaluation builds its own tables (`<module>.tables`, found through `registry.EVALUATIONS`); `tables_for`
hands them to the terminal (Rich), the report (Markdown) and the atlas, from the JSON stored in the
`evaluations` table, so the report can be rebuilt at any time without rerunning anything. The tables that read
several evaluations at once (`trust_tables`, `fill_tables`) live here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import CortexError
from ..core.results import Result
from ..index import audit
from ..models.registry import ModelInfo
from ..store.database import Store
from ..store import evaluations as evaluation_store
from .common import MASKING_KINDS, PAPER_FILL, StoredEvaluation, default_out_dir, latest_variants, stored_evaluation
from .registry import EVALUATIONS
from .tables import TableSpec, interval, num, pct

TITLES = {kind: m.TITLE for kind, m in EVALUATIONS.items()}  # each evaluation's section heading (the atlas' too)


@dataclass(frozen=True)
class ReportResult(Result):
    model: str
    path: str
    kinds: list[str]  # evaluations included
    missing: list[str]  # kinds never run for this model
    trust: list[TableSpec] = field(default_factory=list)  # the report's first section (`trust_tables`), for the terminal


def fill_tables(variants: dict[str, list[dict]]) -> list[TableSpec]:
    """Do the paper's two masking conclusions hold under each fill? One row per fill x conclusion x CORTEX extractor.

    Image level: CORTEX's deletion AUC below random's, paired bootstrap 95% CI excluding 0 ('yes'), reversed ('no'),
    or not significant ('n.s.'). Concept level: masking T*_concept lowers P(true class) more than masking the frequency
    baseline's top-k, and more than that baseline cut to the same number of positions (means over images, no interval).
    """
    judges = sorted({j for results in variants.values() for r in results for j in (r.get("auc_ci") or r.get("table") or {})})
    rows = []
    answer = {"win": "yes", "loss": "no (reversed)", "n.s.": "n.s."}
    fills = sorted({r.get("fill") or r.get("settings", {}).get("fill", PAPER_FILL) for results in variants.values() for r in results},
                   key=lambda f: (f != PAPER_FILL, f))
    for fill in fills:
        for r in variants.get("image-level", []):
            if r.get("fill", PAPER_FILL) != fill or not r.get("auc_ci"):
                continue
            for m in next(iter(r["auc_ci"].values())):
                rows.append([fill, "deletion AUC < random's (CI)", m.upper()]
                            + [answer.get(r["auc_ci"].get(j, {}).get(m, {}).get("random", {}).get("deletion_verdict"), "n/a") for j in judges])
        for r in variants.get("concept-level", []):
            if r.get("settings", {}).get("fill", PAPER_FILL) != fill:
                continue
            for m in r["methods"]:
                if m in ("baseline", "specific", "random") or m.startswith("baseline@"):
                    continue
                for base, label in (("baseline", "ΔP(T*) < ΔP(frequency top-k)"), (f"baseline@{m}", "ΔP(T*) < ΔP(frequency, same n)")):
                    if base not in r["methods"]:
                        continue
                    cells = []
                    for j in judges:
                        t = r["table"].get(j)
                        cells.append("n/a" if t is None else f"{'yes' if t[m]['delta_p'] < t[base]['delta_p'] else 'no'} "
                                                              f"({t[m]['delta_p'] - t[base]['delta_p']:+.2f})")
                    rows.append([fill, label, m.upper()] + cells)
    if not rows:
        return []
    return [TableSpec("the paper's masking conclusions under each fill (image level: paired bootstrap CI over images; "
                      "concept level: difference of mean ΔP, no interval)", ["fill", "conclusion", "extr."] + judges, rows)]


def trust_tables(variants: dict[str, list[dict]]) -> list[TableSpec]:
    """What the stored runs say about trusting the explanations: sanity, insertion AUC, realism, then `fill_tables`.

    `variants`: kind -> stored results (dicts), the paper's fill first for the masking kinds.
    """
    rows = []
    for r in variants.get("sanity", [])[:1]:
        floor = r["random_floor"]
        limit_o, limit_p = floor["top20_overlap"] + 0.1, 1.5 * floor["precision_at_5"]
        for name, b in [(r["extractor"], r)] + list(r.get("others", {}).items()):
            for label, step, keys in (("full cascade", b["cascade"][-1], ("cascade_overlap", "cascade_precision")),
                                      ("label-permuted", b["label_permuted"], ("permuted_overlap", "permuted_precision"))):
                ok = all(b["checks"][k] for k in keys)
                rows.append([f"sanity, {name.upper()} {label}",
                             f"top-20 {num(step['top20_overlap'], 2)} (<= {num(limit_o, 2)}), P@5 {num(step['precision_at_5'], 2)} "
                             f"(<= {num(limit_p, 2)})", "passed" if ok else "FAILED"])
    for r in variants.get("image-level", [])[:1]:
        for judge, sels in (r.get("auc_ci") or {}).items():
            for m, others in sels.items():
                c = others["random"]["insertion"]
                rows.append([f"insertion AUC, {m.upper()} - random, {judge}", f"{c['mean']:+.3f} {interval(c)} ({r['fill']} fill)",
                             others["random"]["insertion_verdict"]])
    for r in variants.get("edit", [])[:1]:
        real = r.get("realism") or {}
        if real.get("rows"):
            gen = real["generated"]
            span = f"{num(min(g['p5'] for g in gen), 2)}-{num(max(g['p95'] for g in gen), 2)}"
            if "source_adversarial_share" in real:
                rows.append(["realism, unedited sources", f"prior NLL {num(real['source_mean_nll'], 2)}/token (generated p5-p95 {span})",
                             f"{pct(real['source_adversarial_share'])} adversarial"])
            for x in real["rows"]:
                region = "oracle" if x["oracle"] else x["region"]
                rise = f", {x['mean_delta_nll']:+.2f} vs source" if "mean_delta_nll" in x else ""
                rows.append([f"realism, {x['method']} ({x['extractor'].upper()}, {region})",
                             f"prior NLL {num(x['mean_nll'], 2)}/token{rise}", f"{pct(x['adversarial_share'])} adversarial"])
            for c in real.get("comparisons", []):
                region = "oracle" if c["oracle"] else c["region"]
                rows.append([f"realism, token - embedding ({c['extractor'].upper()}, {region})",
                             f"NLL rise {c['delta_nll']['mean']:+.3f} {interval(c['delta_nll'])}", c["verdict"]])
    out = [TableSpec("can these explanations be trusted? sanity (Adebayo et al.), insertion (RISE) and realism under the prior",
                     ["check", "measured", "verdict"], rows)] if rows else []
    return out + fill_tables(variants)


def tables_for(kind: str, result: dict) -> list[TableSpec]:
    """The tables of one stored result (its JSON form): a registered evaluation's (`<module>.tables`), or an audit's
    (not a `cortex eval` kind: `cortex audit` is run per (neutral, groups) and reported in its own section)."""
    builders = {k: m.tables for k, m in EVALUATIONS.items()} | {audit.KIND: audit.tables}
    if kind not in builders:
        raise CortexError(f"unknown evaluation kind {kind!r}; known: {', '.join(builders)}")
    return builders[kind](result)


def _markdown_table(spec: TableSpec) -> str:
    lines = [f"*{spec.title}*", "", "| " + " | ".join(spec.columns) + " |", "|" + "---|" * len(spec.columns)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in spec.rows]
    return "\n".join(lines)


def command_line(kind: str, model: str, params: dict) -> str:
    """The `cortex eval` command line that made a stored run (its main settings as flags)."""
    flags = []
    for key, flag in (("images_per_class", "--images-per-class"), ("fill", "--fill"), ("random_draws", "--random-draws"),
                      ("steps", "--steps"), ("images_per_direction", "--images-per-direction"), ("opt_seeds", "--opt-seeds"),
                      ("regions", "--regions"), ("train_images", "--train-images"), ("realism_images", "--realism-images"),
                      ("k", "-k")):
        if key in params and params[key] is not None:
            flags.append(f"{flag} {params[key]}")
    if params.get("extractors") not in (None, "all"):
        flags.append(f"--extractor {params['extractors']}")
    return f"cortex eval {kind} --model {model} " + " ".join(flags)


def write_report(store: Store, model: ModelInfo, out: str | Path | None = None, *, reproducible: bool = False) -> ReportResult:
    """Gather the latest evaluation of each kind for `model` into one Markdown file with its plots.

    Args:
        store: the open database.
        model: the model.
        out: the Markdown file (default `$CORTEX_HOME/reports/<model>/report.md`).
        reproducible: leave out dates, evaluation ids and wall times (`cortex eval all`), so the
            same results give the same bytes.

    Returns:
        ReportResult (path, kinds included, kinds missing).

    Raises:
        CortexError: no evaluation stored for the model, or an unwritable file.
    """
    latest = latest_variants(store, model)
    if not latest:
        raise CortexError(f"no evaluations stored for model {model.name!r}; run `cortex eval image-level --model {model.name}` (or another `cortex eval` command) first")
    path = Path(out).expanduser() if out else default_out_dir(model) / "report.md"
    parts = [
        f"# CORTEX evaluation report: model `{model.name}`",
        "",
        ("Generated by `cortex eval all` in a fresh store" if reproducible else
         f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from the latest stored run of each evaluation")
        + f" (codebook K={model.n_embed}, d={model.embed_dim}, {model.grid}x{model.grid} tokens, {model.image_size} px).",
        "",
    ]
    trust = trust_tables({kind: [ev.result for ev in evs] for kind, evs in latest.items()})
    if trust:
        parts += ["## Trust: sanity checks, insertion, fills and realism", "",
                  "Read off the sections below (the newest run of each); each is explained there.", ""]
        parts += [line for spec in trust for line in (_markdown_table(spec), "")]
    for kind, evaluation in EVALUATIONS.items():
        for ev in latest.get(kind, []):
            fill = ev.params.get("fill", PAPER_FILL) if kind in MASKING_KINDS else PAPER_FILL
            parts += [f"## {evaluation.TITLE}" + ("" if fill == PAPER_FILL else f" ({fill} fill)"), ""]
            seconds = ev.result.get("seconds")
            command = f"`{command_line(kind, model.name, ev.params)}`"
            parts += [command if reproducible else f"Run {ev.created_at} (evaluation #{ev.id}), {num(seconds, 1)} s: {command}", ""]
            for spec in tables_for(kind, ev.result):
                parts += [_markdown_table(spec), ""]
            if ev.plot_path:
                parts += [f"![{kind}]({_relative(ev.plot_path, path)})", ""]
    audits = latest_audits(store, model)
    if audits:
        parts += ["## Audits: which group a neutral concept's images lean toward", ""]
    for ev in audits:
        p = ev.params
        command = (f"`cortex audit '{p.get('neutral')}' --groups '{','.join(p.get('groups', []))}' --model {model.name} "
                        f"--split {p.get('split')} -k {p.get('k')}" + ("" if p.get("contrast", True) else " --no-contrast") + "`")
        parts += [command if reproducible else f"Run {ev.created_at} (evaluation #{ev.id}): {command}", ""]
        for spec in tables_for("audit", ev.result):
            parts += [_markdown_table(spec), ""]
        if ev.plot_path:
            parts += [f"![audit]({_relative(ev.plot_path, path)})", ""]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts))
    except OSError as exc:
        raise CortexError(f"cannot write the report to {str(path)!r} ({exc.strerror or exc}); choose another --out") from exc
    return ReportResult(model.name, str(path), [k for k in EVALUATIONS if k in latest] + (["audit"] if audits else []),
                        [k for k in EVALUATIONS if k not in latest], trust)


def _relative(plot: str, report: Path) -> str:
    try:
        return os.path.relpath(plot, report.parent)
    except ValueError:  # another drive on Windows
        return plot


def latest_audits(store: Store, model: ModelInfo) -> list[StoredEvaluation]:
    """The newest stored audit of each (neutral, groups, split) of `model`, ordered by neutral then groups."""
    latest: dict[tuple, StoredEvaluation] = {}
    for r in evaluation_store.model_evaluations(store, model.id):
        if r.kind == "audit":
            ev = stored_evaluation(r, model)
            latest[(ev.params.get("neutral"), tuple(ev.params.get("groups", [])), ev.params.get("split"))] = ev
    return [latest[key] for key in sorted(latest, key=lambda k: tuple(str(x) for x in k))]
