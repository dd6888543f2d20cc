"""The atlas's HTML: one function per page kind, plain strings, every value escaped; one stylesheet.

Pages are deterministic (no clock, no absolute paths of the site), so a page whose data did not
change renders to the same bytes and is not rewritten. Links are relative: the site works from
file:// and from any static host, with no network and no framework; the index page's filter box is
a few lines of plain JavaScript over a JSON manifest embedded in the page.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable, Sequence

from ..evaluation.report import TableSpec
from .evaluations import EvaluationsPage
from .named import NamedConceptPage
from .pages import ConceptPage, ConceptSummary, Crop, TokenPage, token_path

STYLESHEET = "atlas.css"

CSS = """\
:root { --ink: #1d1f23; --muted: #5f6670; --line: #dde1e6; --bg: #fafbfc; --card: #fff; --accent: #b3261e; --both: #fff3c4; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
a { color: #0b57d0; text-decoration: none; } a:hover { text-decoration: underline; }
header.top { padding: 8px 20px; background: #20242b; color: #e8eaed; font-size: 13px; }
header.top a { color: #fff; font-weight: 600; } header.top span { color: #aeb4bd; }
main { max-width: 1280px; margin: 0 auto; padding: 12px 20px 40px; }
h1 { font-size: 24px; margin: 12px 0 2px; } h1 small { color: var(--muted); font-weight: 400; font-size: 15px; }
h2 { font-size: 16px; margin: 26px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.meta, .muted { color: var(--muted); } p.meta { margin: 2px 0 10px; }
img { image-rendering: pixelated; }
table { border-collapse: collapse; background: var(--card); }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.both td { background: var(--both); }
a.tok { display: inline-flex; align-items: center; gap: 5px; white-space: nowrap; font-variant-numeric: tabular-nums; }
a.tok img, span.tok img { width: 24px; height: 24px; border: 1px solid var(--line); }
.strip { display: flex; gap: 4px; flex-wrap: wrap; }
.strip figure { margin: 0; text-align: center; font-size: 10px; color: var(--muted); }
.strip img { width: 56px; height: 56px; display: block; border: 1px solid var(--line); }
.columns { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 1.2fr); gap: 24px; align-items: start; }
.columns.even { grid-template-columns: 1fr 1fr; }
.columns > * { min-width: 0; overflow-x: auto; }
.figures { display: flex; gap: 12px; flex-wrap: wrap; }
.figures figure { margin: 0; font-size: 12px; color: var(--muted); }
.figures img { width: 192px; height: 192px; display: block; border: 1px solid var(--line); }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px; font-size: 12px; max-width: 300px; }
.card img { width: 128px; height: 128px; border: 1px solid var(--line); }
.card .pair { display: flex; gap: 4px; align-items: center; }
.card img.plot { width: 280px; height: auto; image-rendering: auto; }
figure.table { margin: 8px 0 16px; overflow-x: auto; } figure.table figcaption { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
img.plot { max-width: 100%; height: auto; image-rendering: auto; }
.hero { display: flex; gap: 24px; align-items: flex-start; }
.hero dl { flex: 1 1 320px; }
.hero img.big { width: 192px; height: 192px; border: 1px solid var(--line); }
dl.stats { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 0; }
dl.stats dt { color: var(--muted); } dl.stats dd { margin: 0; }
.neighbours { display: flex; gap: 10px; flex-wrap: wrap; }
.neighbours figure { margin: 0; text-align: center; font-size: 11px; }
.neighbours img { width: 64px; height: 64px; display: block; border: 1px solid var(--line); }
.context { display: grid; grid-template-columns: max-content auto; gap: 6px 14px; align-items: center; }
.chips { display: flex; gap: 6px; flex-wrap: wrap; }
#filter { width: 100%; max-width: 520px; font: inherit; padding: 7px 10px; border: 1px solid #b9c0c8; border-radius: 6px; }
#hits { list-style: none; padding: 0; margin: 6px 0 0; columns: 2; }
#hits li { padding: 1px 0; }
.grid-tokens { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px; }
.grid-tokens .card { max-width: none; display: flex; gap: 8px; align-items: center; }
.grid-tokens .card img { width: 40px; height: 40px; }
dl.prov { display: grid; grid-template-columns: max-content auto; gap: 3px 14px; font-size: 13px; }
dl.prov dt { color: var(--muted); } dl.prov dd { margin: 0; word-break: break-all; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
@media (max-width: 900px) { .columns, .columns.even { grid-template-columns: 1fr; } .hero { flex-wrap: wrap; } }
"""

# The filter box: concepts by name, synonym or class id; tokens by number (and the concepts whose
# T*_concept holds them) or by the classes where they are salient. `?q=` pre-fills it.
FILTER_JS = """\
const data = JSON.parse(document.getElementById('atlas-data').textContent);
const box = document.getElementById('filter'), hits = document.getElementById('hits');
function show(text) {
  const q = text.trim().toLowerCase(), num = /^#?\\d+$/.test(q) ? parseInt(q.replace('#', ''), 10) : null;
  const found = q ? data.concepts.filter(c => c.name.toLowerCase().includes(q) || c.synonyms.some(s => s.toLowerCase().includes(q))
      || c.class_id === num || (num !== null && c.tokens.includes(num))).map(c => [c.path, c.name + ' (class ' + c.class_id + ')'
      + (num !== null && c.tokens.includes(num) ? ': token ' + num + ' is #' + (c.tokens.indexOf(num) + 1) : '')])
    .concat(data.tokens.filter(t => t.token === num || (num === null && t.classes.some(n => n.toLowerCase().includes(q))))
      .map(t => [t.path, 'token ' + t.token + ' (salient in ' + t.salient_classes + ' classes: ' + t.classes.join(', ') + ')'])) : [];
  hits.replaceChildren(...found.slice(0, 60).map(([href, label]) => {
    const li = document.createElement('li'), a = document.createElement('a');
    a.href = href; a.textContent = label; li.append(a); return li; }));
  hits.dataset.count = found.length;
}
box.addEventListener('input', () => show(box.value));
box.value = new URLSearchParams(location.search).get('q') || box.value;
show(box.value);
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "es" if noun.endswith("s") else "s")


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def page_frame(title: str, root: str, crumbs: str, body: str, footer: str, script: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<link rel=\"stylesheet\" href=\"{root}{STYLESHEET}\">\n</head>\n<body>\n"
        f"<header class=\"top\"><a href=\"{root}index.html\">cortex atlas</a> <span>{crumbs}</span></header>\n"
        f"<main>\n{body}\n<footer>{footer}</footer>\n</main>\n{script}</body>\n</html>\n"
    )


BOTH = ' class="both"'


def _maybe_link(inner: str, path: str | None, root: str) -> str:
    return f'<a href="{root}{_e(path)}">{inner}</a>' if path else inner


def _class_link(name: str, path: str | None, root: str) -> str:
    return _maybe_link(_e(name), path, root)


def _token_link(token: int, swatch: str, root: str, label: str | None = None) -> str:
    return (f"<a class=\"tok\" href=\"{root}{token_path(token)}\"><img src=\"{root}{_e(swatch)}\" alt=\"token {token}\">"
            f"{_e(label if label is not None else token)}</a>")


def _crops(crops: Iterable[Crop], root: str, show_class: bool = False) -> str:
    figures = []
    for c in crops:
        title = f"image {c.image_id} ({c.class_name}), cell {c.position}, TSV {c.tsv:.4g}, its #{c.rank} most salient"
        caption = f"{c.class_name[:10]}" if show_class else f"#{c.rank}"
        figures.append(f"<figure><img src=\"{root}{_e(c.src)}\" title=\"{_e(title)}\" alt=\"{_e(title)}\">"
                       f"<figcaption>{_e(caption)}</figcaption></figure>")
    return f"<div class=\"strip\">{''.join(figures)}</div>" if figures else "<span class=\"muted\">none</span>"


def render_concept(page: ConceptPage, crumbs: str, footer: str, image_pages: bool = False) -> str:
    """A concept's page: T*_concept with crops beside the baselines, Figure-2 overlays, evaluations, edits, searches.

    `image_pages`: each overlay links to images/<id>.html (the live explorer's image page)."""
    root = "../"
    parts = [f"<h1>{_e(page.name)} <small>class {page.class_id}</small></h1>"]
    syn = f"also: {', '.join(page.synonyms)} · " if page.synonyms else ""
    parts.append(f"<p class=\"meta\">{_e(syn)}{page.images} indexed {_e(page.split)} images (seeds {_e(page.seeds)}); "
                 f"each image stores its {page.top_n} most salient positions</p>")
    if page.overlays:
        figs = "".join(
            _maybe_link(f"<figure><img src=\"{root}{_e(o.src)}\" alt=\"image {o.image_id} with its most salient tokens boxed\">"
                        f"<figcaption>image {o.image_id} (seed {o.seed})</figcaption></figure>",
                        f"images/{o.image_id}.html" if image_pages else None, root) for o in page.overlays)
        parts.append(f"<h2>Where the extractor looks (Figure 2)</h2><p class=\"muted\">Red boxes: each image's "
                     f"{len(page.overlays[0].positions)} highest-TSV token positions.</p><div class=\"figures\">{figs}</div>")
    rows = []
    for t in page.salient:
        cls = " class=\"both\"" if t.in_baselines else ""
        also = f" title=\"also in the {_e(', '.join(t.in_baselines))} baseline\"" if t.in_baselines else ""
        rows.append(f"<tr id=\"token-{t.token}\"{cls}{also}><td class=\"num\">{t.rank}</td><td>{_token_link(t.token, t.swatch, root)}</td>"
                    f"<td class=\"num\">{t.count}</td><td class=\"num\">{t.n_images}</td><td class=\"num\">{_num(t.mean_tsv)}</td>"
                    f"<td>{_crops(t.crops, root)}</td></tr>")
    salient = ("<table class=\"salient\"><thead><tr><th class=\"num\">#</th><th>token</th><th class=\"num\">count</th>"
               "<th class=\"num\">images</th><th class=\"num\">mean TSV</th><th>where it is most salient (one crop per image)</th></tr>"
               f"</thead><tbody>{''.join(rows)}</tbody></table>")
    aside = []
    for b in page.baselines:
        title = {"frequency": "Frequency baseline", "specific": "Specific baseline"}.get(b.kind, b.kind)
        if b.unavailable:
            aside.append(f"<h2>{_e(title)}</h2><p class=\"muted\">{_e(b.unavailable)}</p>")
            continue
        what = ("most frequent tokens over all positions of the same images" if b.kind == "frequency"
                else f"tokens most specific to the concept, smoothed P(class | token), {b.contrast}")
        score = "<th class=\"num\">P(c|t)</th>" if b.kind == "specific" else ""
        brows = "".join(
            f"<tr{BOTH if r.salient else ''}><td class=\"num\">{r.rank}</td><td>{_token_link(r.token, r.swatch, root)}</td>"
            f"<td class=\"num\">{r.count}</td><td class=\"num\">{r.n_images}</td>"
            + (f"<td class=\"num\">{_num(r.score, 3)}</td>" if b.kind == "specific" else "") + "</tr>" for r in b.rows)
        aside.append(
            f"<h2>{_e(title)}</h2><p class=\"muted\">The {_e(what)}; no extractor. Overlap with T*<sub>concept</sub>: "
            f"<b>{b.overlap} of {len(page.salient)}</b> (Jaccard {_num(b.jaccard, 2)}), highlighted.</p>"
            f"<table class=\"baseline\" data-kind=\"{_e(b.kind)}\"><thead><tr><th class=\"num\">#</th><th>token</th><th class=\"num\">count</th>"
            f"<th class=\"num\">images</th>{score}</tr></thead><tbody>{brows}</tbody></table>")
    parts.append(
        f"<div class=\"columns\"><div><h2>Salient tokens T*<sub>concept</sub> (top {len(page.salient)})</h2>"
        "<p class=\"muted\">Ranked by how many times each token is among an image's most salient positions (count); "
        "images: how many images hold it there; crops: the images where it is most salient, the cell outlined, captioned "
        "with the token's rank among that image's salient positions.</p>"
        f"{salient}</div><aside>{''.join(aside)}</aside></div>")
    if page.evaluations:
        items = []
        for note in page.evaluations:
            chips = "".join(
                f"<p>{_e(method)}: <span class=\"chips\">" + " ".join(f"<a href=\"{root}{token_path(t)}\">{t}</a>" for t in toks) + "</span></p>"
                for method, toks in note.tokens.items())
            plot = (f"<p><a href=\"{root}{_e(note.plot)}\"><img class=\"plot\" src=\"{root}{_e(note.plot)}\" "
                    f"alt=\"{_e(note.kind)} plot\"></a></p>" if note.plot else "")
            items.append(f"<div class=\"card\"><b>{_e(note.kind)}</b> <span class=\"muted\">evaluation #{note.evaluation_id}, "
                         f"{_e(note.created_at)}</span>{''.join(f'<p>{_e(line)}</p>' for line in note.lines)}{chips}{plot}</div>")
        parts.append(f"<h2>Evaluations</h2><div class=\"cards\">{''.join(items)}</div>")
    if page.edits:
        cards = "".join(
            f"<div class=\"card\"><div class=\"pair\"><img src=\"{root}{_e(e.before)}\" alt=\"source of edit {e.id}\"> → "
            f"<img src=\"{root}{_e(e.after)}\" alt=\"result of edit {e.id}\"></div><p>edit {e.id}: {_e(e.source)} → <b>{_e(e.target)}</b>, "
            f"region {_e(e.region)}, {_e(e.method)} ({_e(e.extractor)}), {e.changed} tokens changed</p>"
            + "".join(f"<div class=\"muted\">{_e(s)}</div>" for s in e.scores) + "</div>" for e in page.edits)
        parts.append(f"<h2>Edits (<code>cortex edit</code>)</h2><div class=\"cards\">{cards}</div>")
    if page.searches:
        cards = "".join(
            f"<div class=\"card\"><img src=\"{root}{_e(c.src)}\" alt=\"optimised grid {c.id}\"><p>region {_e(c.region)}, init {_e(c.init)}, "
            f"restart {c.restart} of {c.restarts} ({_e(c.extractor)}): objective {_num(c.objective)}, P(target) {_num(c.p_target, 3)}"
            + "".join(f", {_e(j)} {_num(p, 3)}" for j, p in c.judges.items()) + "</p><p>T*: "
            + " ".join(f"<a href=\"{root}{token_path(t)}\">{t}</a>×{n}" for t, n in c.t_star) + "</p></div>" for c in page.searches)
        parts.append(f"<h2>Optimised grids (<code>cortex optimize</code>, §3.4)</h2><div class=\"cards\">{cards}</div>")
    return page_frame(f"{page.name} · cortex atlas", root, crumbs, "\n".join(parts), footer)


def _swatch(token: int, swatch: str, root: str, pages: set[int]) -> str:
    """A token's tile and number, linked to its token page when this atlas has one."""
    if token in pages:
        return _token_link(token, swatch, root)
    return f"<span class=\"tok\"><img src=\"{root}{_e(swatch)}\" alt=\"token {token}\">{token}</span>"


def render_named_concept(page: NamedConceptPage, token_pages: set[int], crumbs: str, footer: str) -> str:
    """A named concept's page: its members, T*_concept beside the frequency baseline, localisation and audits."""
    root = "../"
    members = ", ".join(f"{_class_link(name, path, root)} ({cid})" for name, cid, path in page.members)
    what = (f"prompt concept: <q>{_e(page.prompt)}</q>, sampled as class {page.members[0][1]}" if page.kind == "prompt" and page.members
            else f"union of {_n(len(page.members), 'class')}: {members}")
    parts = [f"<h1>{_e(page.name)} <small>named concept</small></h1><p class=\"meta\">{what}</p>"]
    if page.not_indexed:
        parts.append(f"<p class=\"muted\">{_e(page.not_indexed)}</p>")
    else:
        def table(rows: list, kind: str) -> str:
            body = "".join(f"<tr{BOTH if r.in_baseline else ''}><td class=\"num\">{r.rank}</td><td>{_swatch(r.token, r.swatch, root, token_pages)}"
                           f"</td><td class=\"num\">{r.count}</td><td class=\"num\">{r.n_images}</td></tr>" for r in rows)
            return (f"<table class=\"{kind}\"><thead><tr><th class=\"num\">#</th><th>token</th><th class=\"num\">count</th>"
                    f"<th class=\"num\">images</th></tr></thead><tbody>{body}</tbody></table>")
        parts.append(
            f"<p class=\"muted\">{page.images} indexed images of the members (seeds {_e(page.seeds)}), saliency run {page.run_id}, "
            f"target <code>{_e(page.target)}</code>. Overlap with the frequency baseline: <b>{page.overlap} of {len(page.salient)}</b>, "
            "highlighted.</p>"
            f"<div class=\"columns\"><div><h2>Salient tokens T*<sub>concept</sub></h2>{table(page.salient, 'salient')}</div>"
            f"<aside><h2>Frequency baseline</h2>{table(page.baseline, 'baseline')}</aside></div>")
    if page.localization:
        parts.append("<h2>Localisation</h2>" + "".join(f"<p>{_e(line)}</p>" for line in page.localization))
    if page.audits:
        cards = []
        for a in page.audits:
            groups = "; ".join(f"{_e(g.get('name'))}: share {_num(g.get('share'), 3)} (95% CI {_e(g.get('share_ci'))}), "
                               f"{_n(len(g.get('tokens') or []), 'token')}" for g in a.groups)
            plot = (f"<p><a href=\"{root}{_e(a.plot)}\"><img class=\"plot\" src=\"{root}{_e(a.plot)}\" alt=\"audit plot\"></a></p>"
                    if a.plot else "")
            cards.append(f"<div class=\"card\"><b>audit #{a.evaluation_id}</b> <span class=\"muted\">{_e(a.created_at)}</span>"
                         f"<p>neutral {_e(a.neutral)}, {a.images} images; {groups}</p><p>Cliff's delta {_num(a.cliff_delta, 3)} "
                         f"(95% CI {_e(a.cliff_delta_ci)})</p>{plot}</div>")
        parts.append(f"<h2>Audits (<code>cortex audit</code>)</h2><div class=\"cards\">{''.join(cards)}</div>")
    return page_frame(f"{page.name} · cortex atlas", root, crumbs, "\n".join(parts), footer)


def _uses(rows, root: str, salient_view: bool) -> str:
    if not rows:
        return "<p class=\"muted\">none</p>"
    body = []
    for u in rows:
        name = _class_link(u.name, u.path, root)
        flag = "" if salient_view or u.salient else " <span class=\"muted\" title=\"in this list but never among its images' most salient tokens\">(never salient)</span>"
        body.append(f"<tr><td class=\"num\">{u.class_rank}</td><td>{name} <span class=\"muted\">{u.class_id}</span>{flag}</td>"
                     f"<td class=\"num\">{u.count}</td><td class=\"num\">{u.n_images}</td><td class=\"num\">{u.token_rank}</td></tr>")
    return ("<table><thead><tr><th class=\"num\">#</th><th>class</th><th class=\"num\">count</th><th class=\"num\">images</th>"
            f"<th class=\"num\" title=\"the token's rank in that class's own list\">its rank there</th></tr></thead><tbody>{''.join(body)}</tbody></table>")


def render_token(page: TokenPage, model_grid: int, crumbs: str, footer: str) -> str:
    """A token's page: the entry decoded alone, the classes where it is salient vs merely frequent, crops, neighbours."""
    root = "../"
    listed = ", ".join(f"<a href=\"{root}{_e(path)}\">{_e(name)}</a> (#{rank})" for name, path, rank in page.concepts)
    parts = [
        f"<h1>token {page.token}</h1>",
        f"<div class=\"hero\"><figure><img class=\"big\" src=\"{root}{_e(page.swatch)}\" alt=\"token {page.token} decoded alone\">"
        f"<figcaption class=\"muted\">token {page.token} at all {model_grid}×{model_grid} positions, decoded</figcaption></figure>"
        f"<dl class=\"stats\"><dt>salient in</dt><dd>{_n(page.salient_classes, 'class')} ({_n(page.salient_count, 'time')} in "
        f"{_n(page.salient_images, 'image')})</dd><dt>occurs in</dt><dd>{_n(page.occurrence_classes, 'class')}</dd>"
        + (f"<dt>in T*<sub>concept</sub> of</dt><dd>{listed}</dd>" if listed else "") + "</dl></div>",
        "<div class=\"columns even\"><div><h2>Classes where it is salient</h2><p class=\"muted\">count: times among an image's most "
        f"salient positions.</p>{_uses(page.salient, root, True)}</div><div><h2>Classes where it merely occurs</h2><p class=\"muted\">"
        f"count: occurrences over all positions of the same images (every image the run indexed).</p>{_uses(page.occurrence, root, False)}</div></div>",
    ]
    if page.context:
        rows = "".join(f"<div>{_class_link(r.name, r.path, root)}</div><div>{_crops(r.crops, root)}</div>" for r in page.context)
        parts.append(f"<h2>In context: where it is most salient, per class</h2><div class=\"context\">{rows}</div>")
    if page.neighbours:
        figs = "".join(
            "<figure>" + _maybe_link(f'<img src="{root}{_e(n.swatch)}" alt="token {n.token}">{n.token}', n.path, root)
            + f"<br><span class=\"muted\">{_num(n.distance, 3)}</span></figure>" for n in page.neighbours)
        parts.append(f"<h2>Nearest codebook neighbours</h2><p class=\"muted\">By Euclidean distance between codebook vectors "
                     f"(the distance the quantiser uses).</p><div class=\"neighbours\">{figs}</div>")
    return page_frame(f"token {page.token} · cortex atlas", root, crumbs, "\n".join(parts), footer)


def render_index(
    title: str, summary: str, concepts: list[ConceptSummary], cross: list[dict[str, Any]], swatches: dict[int, str],
    evaluations: list[dict[str, Any]], provenance: list[tuple[str, str]], search: dict[str, Any], footer: str,
    named: list[NamedConceptPage] | None = None,
) -> str:
    """The index page: filter box, every concept, named concepts, the most cross-class tokens, evaluations, provenance."""
    root = ""
    named_rows = "".join(
        f"<tr><td><a href=\"{_e(n.path)}\">{_e(n.name)}</a></td><td>{_e(', '.join(m[0] for m in n.members))}</td>"
        f"<td class=\"num\">{n.images or ''}</td><td>{_e(' '.join(str(t.token) for t in n.salient[:6])) or 'not indexed'}</td></tr>"
        for n in named or [])
    rows = "".join(
        f"<tr><td><a href=\"{_e(c.path)}\">{_e(c.name)}</a></td><td class=\"num\">{c.class_id}</td><td class=\"num\">{c.images}</td>"
        f"<td><span class=\"chips\">{''.join(_token_link(t, swatches[t], root) for t in c.top[:6])}</span></td>"
        f"<td class=\"num\">{'' if c.overlap is None else f'{c.overlap}/{len(c.top)}'}</td></tr>" for c in concepts)
    tokens = "".join(
        f"<div class=\"card\"><a href=\"{token_path(t['token'])}\"><img src=\"{_e(swatches[t['token']])}\" alt=\"token {t['token']}\"></a>"
        f"<div><a href=\"{token_path(t['token'])}\"><b>token {t['token']}</b></a><br><span class=\"muted\">salient in "
        f"{_n(t['salient_classes'], 'class')} ({t['salient']}×), occurs in {t['occurrence_classes']}</span></div></div>" for t in cross)
    evals = "".join(
        f"<div class=\"card\"><a href=\"{_e(ev['page'])}\"><b>{_e(ev['kind'])}</b></a> <span class=\"muted\">#{ev['id']}, {_e(ev['created_at'])}</span>"
        + (f"<p><a href=\"{_e(ev['plot'])}\"><img class=\"plot\" src=\"{_e(ev['plot'])}\" alt=\"{_e(ev['kind'])} plot\"></a></p>"
           if ev.get("plot") else "") + "</div>" for ev in evaluations)
    prov = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in provenance)
    data = json.dumps(search, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
    body = (
        f"<h1>{_e(title)}</h1><p class=\"meta\">{_e(summary)}</p>"
        "<input id=\"filter\" type=\"search\" placeholder=\"Filter: a concept, a class id, or a token number (e.g. 4)\" "
        "aria-label=\"filter concepts and tokens\" autocomplete=\"off\"><ul id=\"hits\"></ul>"
        f"<h2>Concepts ({len(concepts)})</h2><table class=\"concepts\"><thead><tr><th>concept</th><th class=\"num\">class</th>"
        "<th class=\"num\">images</th><th>top salient tokens</th><th class=\"num\" title=\"T*_concept tokens also in the (first) baseline's top-k\">"
        f"overlap</th></tr></thead><tbody>{rows}</tbody></table>"
        + (f"<h2>Named concepts ({len(named)})</h2><table class=\"named\"><thead><tr><th>concept</th><th>members</th>"
           f"<th class=\"num\">images</th><th>top salient tokens</th></tr></thead><tbody>{named_rows}</tbody></table>" if named else "")
        + f"<h2>Most cross-class tokens</h2><p class=\"muted\">Tokens salient in the most classes of this atlas.</p>"
        f"<div class=\"grid-tokens\">{tokens}</div>"
        + (f"<h2>Evaluations</h2><p><a href=\"{_e(evaluations[0]['page'].split('#')[0])}#trust\">Can these explanations be trusted?</a> "
           "Sanity checks, insertion, both masking fills and the realism of edits, with every stored run's tables.</p>"
           f"<div class=\"cards\">{evals}</div>" if evals else "")
        + f"<h2>Run parameters and provenance</h2><dl class=\"prov\">{prov}</dl>"
    )
    script = f"<script type=\"application/json\" id=\"atlas-data\">{data}</script>\n<script>\n{FILTER_JS}</script>\n"
    return page_frame(title, root, "", body, footer, script)


def _spec_table(spec: TableSpec) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in spec.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in spec.rows)
    return f"<figure class=\"table\"><figcaption>{_e(spec.title)}</figcaption><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></figure>"


def _spec_tables(specs: Sequence[TableSpec]) -> str:
    return "".join(_spec_table(s) for s in specs)


def render_evaluations(page: EvaluationsPage, model: str, crumbs: str, footer: str) -> str:
    """The evaluations page's HTML (pages sit at the site's root)."""
    contents = "".join(f"<li><a href=\"#{_e(s.anchor)}\">{_e(s.title)}</a></li>" for s in page.sections)
    trust = (f"<h2 id=\"trust\">Can these explanations be trusted?</h2><p class=\"muted\">Sanity checks (do the maps change when "
             "the extractor's weights or labels are randomised?), insertion against random, the paper's masking conclusions "
             "under the paper's black fill and under token fill (masked tokens refilled and decoded, so the judges see images "
             f"the decoder can make), and the prior NLL of edits. Each row is read off a section below.</p>{_spec_tables(page.trust)}"
             if page.trust else f"<p class=\"muted\">{_e(page.trust_unreadable)}</p>" if page.trust_unreadable else "")
    sections = "".join(
        f"<h2 id=\"{_e(s.anchor)}\">{_e(s.title)}</h2><p class=\"muted\">{_e(s.created_at)}: <code>{_e(s.command)}</code></p>"
        + (_spec_tables(s.tables) if s.tables else f"<p class=\"muted\">{_e(s.unreadable)}</p>")
        + (f"<p><a href=\"{_e(s.plot)}\"><img class=\"plot\" src=\"{_e(s.plot)}\" alt=\"{_e(s.anchor)} plot\"></a></p>" if s.plot else "")
        for s in page.sections)
    body = (f"<h1>Evaluations <small>{_e(model)}</small></h1><p class=\"meta\">The newest stored run of each evaluation "
            f"(<code>cortex report</code> writes the same as Markdown).</p><ul>{contents}</ul>{trust}{sections}")
    return page_frame(f"evaluations · cortex atlas: {model}", "", crumbs, body, footer)


__all__ = ["CSS", "STYLESHEET", "render_concept", "render_evaluations", "render_index", "render_named_concept", "render_token"]
