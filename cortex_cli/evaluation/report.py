"""Tables of stored evaluation results, and `cortex report`: the latest of each kind in one Markdown file.

The same `tables_for` feeds the terminal (Rich) and the report (Markdown), from the JSON stored in
the `evaluations` table, so the report can be rebuilt at any time without rerunning anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.errors import CortexError
from ..core.results import Result
from ..models.registry import ModelInfo
from ..store.database import Store
from ..store import evaluations as evaluation_store
from .common import KINDS, MASKING_KINDS, PAPER_FILL, StoredEvaluation, default_out_dir, latest_variants, stored_evaluation

TITLES = {
    "image-level": "Image level (paper Figure 3): mean P(true class) after masking the top-n tokens",
    "concept-level": "Concept level (paper Table 2): masking every token of T*_concept",
    "edit": "Editing (paper Table 3): token selection vs embedding optimisation, final step",
    "localization": "Ground truth (mini world): share of top-n tokens on the object",
    "stability": "Stability: top-n overlap of saliency maps",
    "sanity": "Sanity checks (Adebayo et al. 2018): maps under weight randomisation and label permutation",
}
COMMANDS = {
    "image-level": "cortex eval image-level",
    "concept-level": "cortex eval concept-level",
    "edit": "cortex eval edit",
    "localization": "cortex eval localization",
    "stability": "cortex eval stability",
    "sanity": "cortex eval sanity",
}


@dataclass
class TableSpec:
    """A titled table of already-formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class ReportResult(Result):
    model: str
    path: str
    kinds: list[str]  # evaluations included
    missing: list[str]  # kinds never run for this model
    trust: list[TableSpec] = field(default_factory=list)  # the report's first section (`trust_tables`), for the terminal


def _f(x: Any, digits: int = 3) -> str:
    if isinstance(x, (int, float)) and x == x:
        return f"{x:.{digits}f}"
    return "n/a"


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) and x == x else "n/a"


def _signed_pct(x: Any) -> str:
    return f"{100 * x:+.1f}%" if isinstance(x, (int, float)) and x == x else "n/a"


def _method_label(m: str) -> str:
    if m == "random":
        return "random"
    if m == "baseline":
        return "baseline (frequency)"
    if m == "specific":
        return "baseline (specific)"
    if m.startswith("baseline@"):
        return f"baseline cut to n of {m.split('@', 1)[1].upper()}"
    if m == "frequency":
        return "frequency baseline"
    return f"CORTEX {m.upper()}"


def image_level_tables(r: dict) -> list[TableSpec]:
    ns = r["ns"]
    show = [i for i, n in enumerate(ns) if n == 0 or n % 10 == 0] or list(range(len(ns)))
    rows = []
    for judge, methods in r["probability"].items():
        for m, ps in methods.items():
            rows.append([judge, _method_label(m)] + [_f(ps[i]) for i in show])
    t1 = TableSpec(f"mean P(true class) vs masked tokens n ({r['n_images']} images, {r['fill']} fill)",
                   ["judge", "selection"] + [f"n={ns[i]}" for i in show], rows)
    beats = [[j, _method_label(x), _pct(v)] for j, d in r["cortex_beats_random"].items() for x, v in d.items()]
    t2 = TableSpec("share of n values where CORTEX leaves a lower P than random", ["judge", "selection", "share"], beats)
    return [t1, t2] + _auc_tables(r)


def _auc_tables(r: dict) -> list[TableSpec]:
    """Deletion and insertion AUC per judge and selection, and CORTEX - random / - frequency with intervals (stored since issue 24)."""
    if not r.get("auc"):
        return []
    low, high = r.get("auc_range") or [0.0, 1.0]
    rows = [[judge, _method_label(m), _f(a["deletion"]), _f(a["insertion"])] for judge, sels in r["auc"].items() for m, a in sels.items()]
    out = [TableSpec(f"AUC of P(true class) over n/m^2 in [{low:.3f}, {high:.3f}], divided by that range (trapezoid; {r['fill']} fill): "
                     "deletion masks the top n (lower is better), insertion masks all but the top n (higher is better)",
                     ["judge", "selection", "deletion AUC", "insertion AUC"], rows)]
    diffs, held = [], {}
    for judge, sels in r.get("auc_ci", {}).items():
        for m, others in sels.items():
            for other, c in others.items():
                diffs.append([judge, f"{_method_label(m)} - {other}", f"{c['deletion']['mean']:+.3f}", _ci(c["deletion"]),
                              c["deletion_verdict"], f"{c['insertion']['mean']:+.3f}", _ci(c["insertion"]), c["insertion_verdict"]])
                if other == "random":
                    held.setdefault(m, []).append(c["insertion_verdict"] == "win")
    if diffs:
        n_boot = next(c["insertion"]["resamples"] for sels in r["auc_ci"].values() for o in sels.values() for c in o.values())
        yes = [_method_label(m) for m, wins in held.items() if all(wins)]
        no = [_method_label(m) for m, wins in held.items() if not all(wins)]
        said = (f"insertion AUC above random's with a 95% CI excluding 0 for every judge: {', '.join(yes) or 'none'}"
                + (f"; not for: {', '.join(no)}" if no else ""))
        out.append(TableSpec(f"AUC differences, paired bootstrap 95% CI over {r['n_images']} images ({n_boot} resamples); win = deletion "
                             f"CI below 0, insertion CI above 0. {said}",
                             ["judge", "comparison", "Δ deletion", "95% CI", "verdict", "Δ insertion", "95% CI", "verdict"], diffs))
    return out


def concept_level_tables(r: dict) -> list[TableSpec]:
    """Before-numbers per judge, then one row per judge x selection (fits 80 columns)."""
    before, rows = [], []
    for judge, cells in r["table"].items():
        first = next(iter(cells.values()))
        before.append([judge, _pct(first["acc"]), _f(first["p"])])
        for m in r["methods"]:
            e = cells[m]
            rows.append([judge, _method_label(m), _f(e["mean_n"], 1), _signed_pct(e["delta_acc"]), _f(e["delta_p"])])
    scope = f"k={r['k']} tokens per concept, {r['n_classes']} classes, {r['n_images']} test images, {r.get('settings', {}).get('fill', 'black')} fill"
    return [
        TableSpec(f"before masking ({scope})", ["judge", "Acc", "P"], before),
        TableSpec("after masking every position whose token is in the selection (n = mean positions masked)",
                  ["judge", "selection", "n", "ΔA", "ΔP"], rows),
    ]


def _ci(ci: dict) -> str:
    return f"[{ci['low']:+.3f}, {ci['high']:+.3f}]"


def edit_tables(r: dict) -> list[TableSpec]:
    """Before-numbers, the paper-protocol rows, the oracle rows apart, and token - embedding intervals."""
    if "rows" not in r:  # stored before the region kinds and intervals (one GT-centred box, no CI)
        return _edit_tables_v1(r)
    n, k = r["n_sources"], r["opt_seeds"]
    before: dict[str, list[str]] = {}
    for row in r["rows"]:
        e = row["effect"]
        before.setdefault(row["judge"], [row["judge"], _pct(e["acc_orig"]), _f(e["p_orig"]), _f(e["p_targ"])])
    out = [TableSpec(f"before editing: judges on the {n} source images", ["judge", "Acc_orig", "P_orig", "P_targ"], list(before.values()))]
    columns = ["judge", "extr.", "region", "method", "ΔP_orig", "ΔP_targ", "Acc_targ"]

    def cells(row: dict) -> list[str]:
        e = row["effect"]
        return [row["judge"], row["extractor"].upper(), row["region"], row["method"], _f(e["delta_p_orig"]),
                _f(e["delta_p_targ"]), _pct(e["acc_targ_after"])]

    main = [cells(row) for row in r["rows"] if not row["oracle"]]
    oracle = [cells(row) for row in r["rows"] if row["oracle"]]
    if main:
        out.append(TableSpec(f"after step {r['steps']} (final), mean of {n} sources x {k} seeds; boxes (m/4)^2: "
                             "fixed = centre (paper), saliency = max summed TSV", columns, main))
    if oracle:
        out.append(TableSpec("ORACLE, an upper bound, not the paper's protocol: box centred on the ground-truth part",
                             columns, oracle))
    for metric, name, better in (("delta_p_targ", "ΔP_targ", "above"), ("delta_p_orig", "ΔP_orig", "below")):
        rows = [[c["judge"], c["extractor"].upper(), "oracle (UB)" if c["oracle"] else c["region"], f"{c[metric]['mean']:+.3f}",
                 _ci(c[metric]), c["verdict"] if metric == "delta_p_targ" else c["orig_verdict"]] for c in r.get("comparisons", [])]
        if rows:
            out.append(TableSpec(f"token - embedding of {name}: paired bootstrap 95% CI over {n} sources (seeds averaged); "
                                 f"win = CI {better} 0", ["judge", "extr.", "region", "diff", "95% CI", "verdict"], rows))
    real = r.get("realism")
    if real and real.get("rows"):
        gen = real["generated"]
        span = (f"mean {_f(sum(g['mean'] for g in gen) / len(gen))}, p5-p95 {_f(min(g['p5'] for g in gen))}-"
                f"{_f(max(g['p95'] for g in gen))}")
        rows = [[x["extractor"].upper(), "oracle (UB)" if x["oracle"] else x["region"], x["method"], str(x["n_edits"]),
                 _f(x["mean_nll"]), f"{x['mean_delta_nll']:+.3f}" if "mean_delta_nll" in x else "n/a", _pct(x["adversarial_share"])]
                for x in real["rows"]]
        sources = f"sources {_f(real['source_mean_nll'])}" + (
            f", {_pct(real['source_adversarial_share'])} of them already adversarial" if "source_adversarial_share" in real else "")
        out.append(TableSpec(
            f"realism: prior NLL per token under the target class ({sources}; generated {real['images_per_class']}/class: "
            f"{span}); rise = edit - its source; adversarial = above p95 + {real['margin']:g} x (p95 - p5)",
            ["extr.", "region", "method", "edits", "NLL", "rise", "adversarial"], rows))
        if real.get("comparisons"):
            n_boot = real["comparisons"][0]["delta_nll"]["resamples"]
            out.append(TableSpec(
                f"realism: token - embedding of the NLL rise, paired bootstrap 95% CI over {n} sources ({n_boot} resamples); "
                "win = CI below 0 (token selection's edits likelier under the prior)",
                ["extr.", "region", "diff", "95% CI", "verdict"],
                [[c["extractor"].upper(), "oracle (UB)" if c["oracle"] else c["region"], f"{c['delta_nll']['mean']:+.3f}",
                  _ci(c["delta_nll"]), c["verdict"]] for c in real["comparisons"]]))
    return out


def _edit_tables_v1(r: dict) -> list[TableSpec]:
    rows = []
    columns: list[str] = []
    for judge, cells in r["table"].items():
        columns = list(cells)
        first = next(iter(cells.values()))
        rows.append([judge, _pct(first["acc_orig"]), _f(first["p_orig"]), _f(first["p_targ"])]
                    + [f"{_f(cells[c]['delta_p_orig'])} / {_f(cells[c]['delta_p_targ'])}" for c in columns])
    label = {c: f"{c.split('/')[0]} {c.split('/')[1].upper()} ΔP_orig / ΔP_targ" for c in columns}
    return [TableSpec(f"{r['n_edits']} source images, {r['steps']} steps (final step scored; GT-centred box, no intervals)",
                      ["judge", "Acc_orig", "P_orig", "P_targ"] + [label[c] for c in columns], rows)]


def localization_tables(r: dict) -> list[TableSpec]:
    ns = r["ns"]
    rows = [[_method_label(m)] + [_f(s["precision"][str(n)]) for n in ns] + [_f(s["pointing_game"])]
            for m, s in r["methods"].items()]
    return [TableSpec(
        f"{r['n_images']} mini-world images; a token is on the object when >= {int(100 * r['inside_fraction'])}% of its patch is; "
        f"object share of positions {_f(r['object_share'])}",
        ["selection"] + [f"precision@{n}" for n in ns] + ["pointing game"], rows,
    )]


def stability_tables(r: dict) -> list[TableSpec]:
    rows = []
    ns: list[str] = []
    for name, st in r["extractors"].items():
        for n_s, cells in st["across_seeds"].items():
            ns = list(cells)
            rows.append([name.upper(), f"N={n_s}", "seeds (pairwise)"] + [_f(cells[n]) for n in ns])
            rows.append([name.upper(), f"N={n_s}", "vs largest N"] + [_f(st["vs_largest_n"][n_s][n]) for n in ns])
        default = f"N={r['settings'].get('default_samples', 20)}"
        rows.append([name.upper(), default, "fp32 vs bf16"] + [_f(st["fp32_vs_bf16"][n]) for n in ns])
        if st.get("rank_gap"):
            rows.append([name.upper(), default, "TSV gap at cut"] + [_f(st["rank_gap"][n], 4) for n in ns])
    return [TableSpec(
        f"top-n overlap on {r['n_images']} images; every (N, seed) draws independent noise; 'vs largest N' compares "
        "with another seed's largest-N map; 'TSV gap at cut': median (TSV[n-1] - TSV[n]) / TSV[n-1] in fp32",
        ["extractor", "samples", "comparison"] + [f"top-{n}" for n in ns], rows)]


def sanity_verdict(checks: dict, floor: dict) -> str:
    """The issue's check in words: which of its four conditions held."""
    limit = f"top-20 overlap <= {_f(floor['top20_overlap'] + 0.1)} (random floor + 0.1) and precision@5 <= {_f(1.5 * floor['precision_at_5'])} (1.5 x random)"
    failed = [name.replace("_", " ") for name, ok in checks.items() if not ok]
    if not failed:
        return f"PASSED: after the full cascade and for the label-permuted extractor, {limit}"
    return (f"FAILED ({', '.join(failed)}): the maps keep more of the trained extractor's than the check allows "
            f"({limit}); a finding about these explanations, not an error")


def sanity_tables(r: dict) -> list[TableSpec]:
    """The cascade (one row per step), the label-permuted extractor and the floor; independent layers second."""
    floor = r["random_floor"]

    def row(variant: str, step: dict, layers: str) -> list[str]:
        return [variant, layers, _f(step["spearman"]), _f(step["top20_overlap"]), _f(step["precision_at_5"])]

    def blocks() -> list[tuple[str, dict]]:
        return [(r["extractor"], r)] + list(r.get("others", {}).items())

    columns = ["variant", "layers re-initialised", "Spearman", "top-20 overlap", "precision@5"]
    rows, alone = [], []
    for name, b in blocks():
        label = name.upper()
        rows.append([f"{label} trained", "none", "1.000", "1.000", _f(b["trained_precision_at_5"])])
        for i, step in enumerate(b["cascade"]):
            rows.append(row(f"{label} cascade {i + 1}", step, f"{len(step['layers'])} modules, down to {step['layers'][-1]}"))
        t = b["permuted_training"]
        rows.append(row(f"{label} label-permuted", b["label_permuted"],
                        f"all (trained on permuted labels: fit {_f(t.get('acc_permuted_labels'), 2)}, true-label acc {_f(t.get('acc_true_labels'), 2)})"))
        alone += [row(f"{label} layer {i + 1} alone", step, ", ".join(step["layers"])) for i, step in enumerate(b["independent"])]
    rows.append(["random floor", "two unrelated random maps", _f(floor["spearman"]), _f(floor["top20_overlap"]), _f(floor["precision_at_5"])])
    verdicts = "; ".join(f"{name.upper()}: {sanity_verdict(b['checks'], floor)}" for name, b in blocks())
    out = [TableSpec(f"{r['n_images']} mini-world images, each variant against the trained extractor's TSV maps "
                     f"(layers output -> input); check: {verdicts}", columns, rows)]
    if alone:
        out.append(TableSpec("independent randomisation: one layer at a time, the others trained", columns, alone))
    return out


def audit_tables(r: dict) -> list[TableSpec]:
    """One row per group (its tokens, share and interval), Cliff's delta in the title (`cortex audit`)."""
    ci = r.get("cliff_delta_ci")
    delta = f"Cliff's delta {_signed(r['cliff_delta'])}" + (f" [{_signed(ci[0])}, {_signed(ci[1])}]" if ci else "")
    rows = [[g["name"], " ".join(map(str, g["tokens"])), _f(g["mean_count"], 2), _f(g["share"], 2),
             f"[{_f(g['share_ci'][0], 2)}, {_f(g['share_ci'][1], 2)}]" if g.get("share_ci") else "n/a"] for g in r["groups"]]
    out = [TableSpec(f"{r['neutral']}: {r['images']} {r['split']} images audited; {delta} (> 0: toward the first group); "
                     f"ties {_f(r['ties'], 2)}", ["group", "tokens", "mean count", "share", "95% CI"], rows)]
    judges = [[name, _f(j["agreement"], 2), str(j["compared"])] for name, j in r.get("judges", {}).items()]
    if judges:
        out.append(TableSpec("each image's lean vs the judge's call (more probability on that group's classes)",
                             ["judge", "agreement", "leaning images"], judges))
    return out


def _signed(x: Any) -> str:
    return f"{x:+.2f}" if isinstance(x, (int, float)) and x == x else "n/a"


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
                             f"top-20 {_f(step['top20_overlap'], 2)} (<= {_f(limit_o, 2)}), P@5 {_f(step['precision_at_5'], 2)} "
                             f"(<= {_f(limit_p, 2)})", "passed" if ok else "FAILED"])
    for r in variants.get("image-level", [])[:1]:
        for judge, sels in (r.get("auc_ci") or {}).items():
            for m, others in sels.items():
                c = others["random"]["insertion"]
                rows.append([f"insertion AUC, {m.upper()} - random, {judge}", f"{c['mean']:+.3f} {_ci(c)} ({r['fill']} fill)",
                             others["random"]["insertion_verdict"]])
    for r in variants.get("edit", [])[:1]:
        real = r.get("realism") or {}
        if real.get("rows"):
            gen = real["generated"]
            span = f"{_f(min(g['p5'] for g in gen), 2)}-{_f(max(g['p95'] for g in gen), 2)}"
            if "source_adversarial_share" in real:
                rows.append(["realism, unedited sources", f"prior NLL {_f(real['source_mean_nll'], 2)}/token (generated p5-p95 {span})",
                             f"{_pct(real['source_adversarial_share'])} adversarial"])
            for x in real["rows"]:
                region = "oracle" if x["oracle"] else x["region"]
                rise = f", {x['mean_delta_nll']:+.2f} vs source" if "mean_delta_nll" in x else ""
                rows.append([f"realism, {x['method']} ({x['extractor'].upper()}, {region})",
                             f"prior NLL {_f(x['mean_nll'], 2)}/token{rise}", f"{_pct(x['adversarial_share'])} adversarial"])
            for c in real.get("comparisons", []):
                region = "oracle" if c["oracle"] else c["region"]
                rows.append([f"realism, token - embedding ({c['extractor'].upper()}, {region})",
                             f"NLL rise {c['delta_nll']['mean']:+.3f} {_ci(c['delta_nll'])}", c["verdict"]])
    out = [TableSpec("can these explanations be trusted? sanity (Adebayo et al.), insertion (RISE) and realism under the prior",
                     ["check", "measured", "verdict"], rows)] if rows else []
    return out + fill_tables(variants)


_TABLES = {
    "image-level": image_level_tables,
    "concept-level": concept_level_tables,
    "edit": edit_tables,
    "localization": localization_tables,
    "stability": stability_tables,
    "sanity": sanity_tables,
    "audit": audit_tables,  # not a KIND: `cortex audit` is run per (neutral, groups), reported in its own section
}


def tables_for(kind: str, result: dict) -> list[TableSpec]:
    """The tables of one evaluation result (its stored JSON form)."""
    if kind not in _TABLES:
        raise CortexError(f"unknown evaluation kind {kind!r}; known: {', '.join(_TABLES)}")
    return _TABLES[kind](result)


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
    return f"{COMMANDS[kind]} --model {model} " + " ".join(flags)


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
    for kind in KINDS:
        for ev in latest.get(kind, []):
            fill = ev.params.get("fill", PAPER_FILL) if kind in MASKING_KINDS else PAPER_FILL
            parts += [f"## {TITLES[kind]}" + ("" if fill == PAPER_FILL else f" ({fill} fill)"), ""]
            seconds = ev.result.get("seconds")
            command = f"`{command_line(kind, model.name, ev.params)}`"
            parts += [command if reproducible else f"Run {ev.created_at} (evaluation #{ev.id}), {_f(seconds, 1)} s: {command}", ""]
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
    return ReportResult(model.name, str(path), [k for k in KINDS if k in latest] + (["audit"] if audits else []),
                        [k for k in KINDS if k not in latest], trust)


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
