"""The explorer's own pages, in the atlas's look: an image page (heat map, top-n boxes, the token under the
pointer, live masking and editing), the upload page, and the page shown while nothing is indexed.

The image page is static HTML plus `EXPLORER_JS`, which calls the JSON API: `POST /api/explain` with every
position (the whole TSV map), `POST /api/mask`, `POST /api/edit` then `GET /api/jobs/{id}` until it is done.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from ..atlas.html import page_frame

VIEW_SIDE = 384  # the picture's side on the page (pixels)


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _json(value: Any) -> str:
    """JSON to embed in a <script> block: '<' escaped, so no value can close the block."""
    return json.dumps(value).replace("<", "\\u003c")


def image_page(source: dict[str, Any], title: str, png: str, grid: int | None, model: str) -> str:
    """One stored image or upload, explained and editable in the browser."""
    body = f"""<h1>{_e(title)}</h1>
<p class="meta">model {_e(model)} · <a href="{_e(png)}">the PNG</a> · <span id="status">explaining…</span></p>
<div class="columns even"><div>
<canvas id="view" width="{VIEW_SIDE}" height="{VIEW_SIDE}" data-png="{_e(png)}" data-grid="{_e(grid or '')}"
 style="cursor:crosshair;border:1px solid var(--line);image-rendering:pixelated"></canvas>
<p><label>top <input id="topn" type="number" min="1" value="5" style="width:4em"> boxes</label>
<label><input id="heat" type="checkbox" checked> TSV heat map</label>
<button id="clear" type="button">clear selection</button></p>
<p class="muted">Red boxes: the image's highest-TSV tokens. Click a cell to select it for masking (yellow);
drag across cells to draw an edit region (blue).</p>
<h2>Token under the pointer</h2><div id="hover" class="card"><span class="muted">move over the picture</span></div>
</div><aside>
<h2>Judges</h2><table id="judges"><thead><tr><th>judge</th><th class="num">P(class)</th></tr></thead><tbody></tbody></table>
<h2>Mask</h2>
<p><label>fill <select id="fill"><option>black</option><option>tokens</option><option>mean</option><option>blur</option></select></label>
<button id="mask-selected" type="button">mask selected</button> <button id="mask-top" type="button">mask top n</button></p>
<div id="mask-result"></div>
<h2>Edit</h2>
<p><label>region <input id="region" value="" placeholder="R0:R1,C0:C1" style="width:8em"></label>
<label>toward <select id="target"></select></label></p>
<p><label>steps <input id="steps" type="number" min="1" max="20000" value="300" style="width:5em"></label>
<label>method <select id="space"><option value="token">token (Gumbel-Softmax)</option><option value="embedding">embedding</option></select></label>
<button id="edit-go" type="button">edit</button></p>
<progress id="edit-progress" max="1" value="0" hidden></progress> <span id="edit-status"></span>
<div id="edit-result"></div>
</aside></div>
<script id="source" type="application/json">{_json(source)}</script>
<script id="model" type="application/json">{_json(model)}</script>"""
    return page_frame(title + " · cortex explorer", "/", "· explorer", body, _footer(), "<script src=\"/explorer.js\"></script>\n")


def explore_page(model: str) -> str:
    """Upload a PNG (a cortex PNG carries its tokens; another picture is encoded by the VQGAN) to explain or edit it."""
    body = f"""<h1>Explore a picture</h1>
<p>A PNG written by cortex carries its tokens and model; any other picture is centre-cropped and encoded by
model {_e(model)}'s VQGAN. At most 8 MiB.</p>
<p><input id="file" type="file" accept="image/png,image/*"> <span id="status"></span></p>
<script>
document.getElementById('file').addEventListener('change', async e => {{
  const status = document.getElementById('status'), file = e.target.files[0];
  if (!file) return;
  status.textContent = 'uploading…';
  const r = await fetch('/api/uploads', {{method: 'POST', body: file}});
  const data = await r.json();
  if (!r.ok) {{ status.textContent = 'error: ' + data.error; return; }}
  location.href = data.page;
}});
</script>"""
    return page_frame("explore a picture · cortex explorer", "/", "· explore", body, _footer())


def no_atlas_page(model: str, reason: str) -> str:
    """The index page while the model has nothing indexed: why, and what to run."""
    body = (f"<h1>cortex explorer</h1><p>No atlas of model {_e(model)} yet: {_e(reason)}</p>"
            "<p>Index some images (<code>cortex index --class NAME --images 12</code>) and reload; "
            "<a href=\"/explore.html\">explore a picture</a> or use the <a href=\"/docs\">JSON API</a> meanwhile.</p>")
    return page_frame("cortex explorer", "/", "", body, _footer())


def _footer() -> str:
    return ("cortex explorer · <a href=\"/explore.html\">explore a picture</a> · <a href=\"/docs\">JSON API</a> · "
            "every answer is what <code>cortex … --json</code> prints")


EXPLORER_JS = r"""
const $ = id => document.getElementById(id);
const source = JSON.parse($('source').textContent), model = JSON.parse($('model').textContent);
const view = $('view'), ctx = view.getContext('2d'), picture = new Image();
let grid = parseInt(view.dataset.grid, 10) || 0, cells = [], selected = new Set(), region = null, drag = null, boxes = [];

async function api(path, body) {
  const init = body === undefined ? {} : {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)};
  const r = await fetch(path, init);
  let data; try { data = await r.json(); } catch (e) { data = {error: r.status + ' ' + r.statusText}; }
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
const say = (id, text) => { $(id).textContent = text; };
const cellSide = () => view.width / grid;
const fmt = v => (v === null || v === undefined) ? '' : Number(v).toFixed(3);
const el = (tag, attrs = {}, ...kids) => { const e = document.createElement(tag); Object.assign(e, attrs); e.append(...kids); return e; };
function row(...values) { return el('tr', {}, ...values.map((v, i) => el('td', i ? {className: 'num'} : {}, String(v)))); }

function draw() {
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(picture, 0, 0, view.width, view.height);
  if (!grid) return;
  const s = cellSide(), max = Math.max(...cells.map(c => c.tsv), 1e-12);
  if ($('heat').checked) {
    for (const c of cells) { ctx.fillStyle = `rgba(255, 60, 0, ${0.6 * c.tsv / max})`; ctx.fillRect(c.col * s, c.row * s, s, s); }
  }
  const n = Math.max(1, parseInt($('topn').value, 10) || 1);
  boxes = cells.filter(c => c.rank <= n);
  ctx.lineWidth = 2; ctx.strokeStyle = 'red';
  for (const c of boxes) ctx.strokeRect(c.col * s + 1, c.row * s + 1, s - 2, s - 2);
  ctx.strokeStyle = '#ffd400';
  for (const p of selected) ctx.strokeRect((p % grid) * s + 3, Math.floor(p / grid) * s + 3, s - 6, s - 6);
  if (region) { ctx.strokeStyle = '#1f6feb'; ctx.setLineDash([6, 3]);
    ctx.strokeRect(region.c0 * s, region.r0 * s, (region.c1 - region.c0) * s, (region.r1 - region.r0) * s); ctx.setLineDash([]); }
}

function cellAt(event) {
  const r = view.getBoundingClientRect(), s = r.width / grid;
  const col = Math.min(grid - 1, Math.max(0, Math.floor((event.clientX - r.left) / s)));
  const rw = Math.min(grid - 1, Math.max(0, Math.floor((event.clientY - r.top) / s)));
  return {row: rw, col};
}
function hover(event) {
  if (!grid) return;
  const {row: r, col: c} = cellAt(event), cell = cells[r * grid + c];
  if (drag) { drag.end = {row: r, col: c}; setRegion(drag.start, drag.end); draw(); }
  if (!cell) return;
  const box = $('hover'); box.replaceChildren(
    el('img', {src: `/api/token/${cell.token}.png?model=${encodeURIComponent(model)}`, alt: `token ${cell.token}`, width: 48, height: 48}),
    el('span', {id: 'hover-text'}, ` token ${cell.token} at row ${r}, col ${c} (position ${cell.position}): TSV ${fmt(cell.tsv)}, rank ${cell.rank} `),
    el('a', {href: `/tokens/${cell.token}.html`}, 'its page'));
}
function setRegion(a, b) {
  region = {r0: Math.min(a.row, b.row), r1: Math.max(a.row, b.row) + 1, c0: Math.min(a.col, b.col), c1: Math.max(a.col, b.col) + 1};
  $('region').value = `${region.r0}:${region.r1},${region.c0}:${region.c1}`;
}
view.addEventListener('mousemove', hover);
view.addEventListener('mousedown', e => { if (grid) drag = {start: cellAt(e), end: cellAt(e)}; });
window.addEventListener('mouseup', e => {
  if (!drag) return;
  const {start, end} = drag; drag = null;
  if (start.row === end.row && start.col === end.col) {
    const p = start.row * grid + start.col; selected.has(p) ? selected.delete(p) : selected.add(p);
  } else setRegion(start, end);
  draw();
});
$('heat').addEventListener('change', draw);
$('topn').addEventListener('input', draw);
$('clear').addEventListener('click', () => { selected.clear(); region = null; $('region').value = ''; draw(); });

function showMask(m) {
  const judges = $('judges').tBodies[0];
  judges.replaceChildren(...m.judges.map(j => row(j.judge, fmt(j.original))));
  const table = el('table', {id: 'mask-table'}, el('thead', {}, el('tr', {}, ...['judge', 'original', 'masked', 'random'].map(
    (h, i) => el('th', i ? {className: 'num'} : {}, h)))), el('tbody', {}, ...m.judges.map(j => row(j.judge, fmt(j.original), fmt(j.masked), fmt(j.random)))));
  const strip = m.out ? [el('img', {id: 'mask-strip', src: m.out, alt: 'original, masked, random'})] : [];
  $('mask-result').replaceChildren(el('p', {className: 'muted'},
    `P('${m.class_name}') with ${m.positions.length} tokens masked (${m.fill}; ${m.chosen_by}) beside ${m.random_positions.length} random ones`),
    table, ...strip);
}
async function mask(body) {
  say('status', 'masking…');
  try { const m = await api('/api/mask', {...source, ...body, fill: $('fill').value});
        showMask(m); say('status', 'ready'); }
  catch (e) { say('status', 'error: ' + e.message); }
}
$('mask-selected').addEventListener('click', () => selected.size ? mask({positions: [...selected].sort((a, b) => a - b)})
  : say('status', 'select tokens first (click cells)'));
$('mask-top').addEventListener('click', () => mask({top_n: Math.max(1, parseInt($('topn').value, 10) || 1)}));

async function edit() {
  const body = {...source, target: $('target').value, region: $('region').value, steps: parseInt($('steps').value, 10), space: $('space').value};
  const bar = $('edit-progress'); bar.hidden = false; bar.value = 0; say('edit-status', 'queued');
  $('edit-result').replaceChildren();
  try {
    const {job} = await api('/api/edit', body);
    for (;;) {
      const s = await api(`/api/jobs/${job}`);
      if (s.progress.total) { bar.max = s.progress.total; bar.value = s.progress.done; }
      say('edit-status', `${s.status} ${s.progress.done}/${s.progress.total}`);
      if (s.status === 'done') { showEdit(s); break; }
      if (s.status === 'failed' || s.status === 'cancelled') { say('edit-status', 'error: ' + s.error); break; }
      await new Promise(r => setTimeout(r, 400));
    }
  } catch (e) { say('edit-status', 'error: ' + e.message); }
}
function showEdit(s) {
  const r = s.result, strip = r.strip_path, final = r.output_path;
  const table = el('table', {id: 'edit-table'}, el('thead', {}, el('tr', {}, ...['scorer', 'P(source) before', 'after', 'P(target) before', 'after'].map(
    (h, i) => el('th', i ? {className: 'num'} : {}, h)))), el('tbody', {}, ...r.probabilities.map(p => row(p.scorer,
    fmt(p.source_before), fmt(p.source_after), fmt(p.target_before), fmt(p.target_after)))));
  $('edit-result').replaceChildren(
    el('img', {id: 'edit-strip', src: strip, alt: 'edit strip: source, result'}),
    el('p', {}, `edit ${r.edit_id}: ${r.changed.length} tokens changed in ${r.region} toward ${r.target_name}; prior NLL ${fmt(r.prior_nll_source)} → ${fmt(r.prior_nll)} `,
       el('a', {id: 'edit-download', href: final, download: ''}, 'download the edited PNG')), table);
  say('edit-status', 'done');
}
$('edit-go').addEventListener('click', edit);

async function targets() {
  const models = await api('/api/models'), mine = models.find(m => m.name === model);
  const concepts = await api(`/api/concepts?model=${encodeURIComponent(model)}`).catch(() => []);
  const names = [...(mine ? mine.classes.map(c => c.name) : []), ...concepts.map(c => c.name)];
  $('target').replaceChildren(...names.map(n => el('option', {value: n}, n)));
  if (names.length > 1) $('target').selectedIndex = 1;
}

(async () => {
  try {
    picture.src = view.dataset.png; await picture.decode();
    targets();
    const ex = await api('/api/explain', {...source, top_n: 4096});
    grid = Math.round(Math.sqrt(ex.top.length));
    cells = new Array(grid * grid);
    for (const t of ex.top) cells[t.position] = t;
    view.dataset.grid = grid;
    draw();
    say('status', `explained '${ex.class_name}' (${ex.target}); TSV ${ex.tsv_from}, extractor ${ex.extractor}`);
    document.body.dataset.ready = '1';
    if (source.upload) source.target = ex.class_name;  // a plain picture names no class: the judges score the explained one
    await mask({top_n: Math.max(1, parseInt($('topn').value, 10) || 1)});
  } catch (e) { say('status', 'error: ' + e.message); document.body.dataset.ready = 'error'; }
})();
"""
