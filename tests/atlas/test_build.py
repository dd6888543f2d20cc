"""atlas/build.py, the token atlas (`cortex atlas`): built from a tiny index, opened in headless Chromium, rebuilt incrementally.

The browser test crawls the site from its index page inside Chromium (a harness page loads every
page in an iframe, with file access allowed): every page must be reachable, every picture must
decode, every link must resolve, the expected tokens must be in the DOM and the filter box must
find concepts and tokens. Chromium is Debian's `chromium` package (.ci/run installs it); without it
the browser test is skipped with that reason and the rest still runs.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from cortex_cli.models import concepts, registry as model_registry
from cortex_cli.atlas import PageSettings, atlas_of, build_atlas, nearest_neighbours
from cortex_cli.cli import app
from cortex_cli.index.build import IndexJob, index_jobs
from cortex_cli.index.rankings import token_usage, top_tokens
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.database import open_store
from cortex_cli.store.edits import NewEdit, pending_edit
from cortex_cli.store.evaluations import insert_evaluation
from cortex_cli.store.schema import ImageRow, RunTokenCountRow
from cortex_cli.store.searches import insert_restarts

from index_helpers import ToyExtractor, index_three_classes

SALIENCY = SaliencySettings(samples=2, top_n=8)
# small pages: the tiny model decodes ~10 grids a second on a busy 2-core CPU
SMALL = PageSettings(top_k=3, crops=2, overlays=2, context_classes=2, context_crops=2, neighbours=1, cross_class=3, token_classes=4)
runner = CliRunner()


def _chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)


@dataclass
class Built:
    store: object
    model: model_registry.ModelInfo
    extractor: object  # the toy extractor's registry entry
    classes: list
    result: object  # the first build's AtlasResult
    db_path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_path}"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_files):
    """A SQLite index of 3 tiny-model classes (5 images each; class 0 has 2 more stored) and its atlas, built once."""
    root = tmp_path_factory.mktemp("atlas")
    store = open_store(f"sqlite:///{root / 'index.db'}")
    config, ckpt, labels = tiny_model_files
    model = model_registry.add_model(store, "tiny", config, ckpt, str(labels))
    extractor, classes = index_three_classes(store, model, SALIENCY)
    result = build_atlas(store, model, root / "site", settings=SMALL)
    yield Built(store, model, extractor, classes, result, root / "index.db")
    store.close()


def _copy(built: Built, tmp_path: Path):
    """A private copy of the module's database (SQLite's backup API) and site, for tests that change them."""
    target = tmp_path / "copy.db"
    with sqlite3.connect(built.db_path) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    site = tmp_path / "site"
    shutil.copytree(built.result.out, site)
    return open_store(f"sqlite:///{target}"), site


def _browse(site: Path, work: Path, queries: list[str]) -> list[dict]:
    """Crawl the site from index.html inside headless Chromium; per page: pictures decoded, links, token tables, filter hits."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not found (Debian: apt-get install chromium; .ci/run installs it): the atlas's browser test needs it")
    harness = work / "harness.html"
    start = (site / "index.html").as_uri()
    harness.write_text("""<!DOCTYPE html><html><body><pre id="out">pending</pre><script>
const queries = %s, queue = [%s], seen = new Set(), pages = [];
const texts = (d, sel) => [...d.querySelectorAll(sel)].map(e => e.textContent.trim());
function visit(url) {
  return new Promise(resolve => {
    const frame = document.createElement('iframe');
    frame.style.width = '1280px'; frame.style.height = '900px';
    frame.onload = () => {
      let d = null; try { d = frame.contentDocument; } catch (e) {}
      if (!d || !d.body || !d.body.children.length) { frame.remove(); resolve({url, error: 'did not load'}); return; }
      // a frame's load event waits for its pictures: each has loaded and decoded, or failed, by now
      const imgs = [...d.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}));
      const page = {url, imgs, links: [...d.querySelectorAll('a[href]')].map(a => a.href), title: d.title,
        salient: texts(d, 'table.salient a.tok'), baseline: texts(d, 'table.baseline a.tok'),
        classes: texts(d, '.columns table a'), h1: texts(d, 'h1')};
      if (url.endsWith('/index.html')) {
        const box = d.getElementById('filter'); page.filter = {};
        for (const q of queries) { box.value = q; box.dispatchEvent(new Event('input'));
          page.filter[q] = [...d.querySelectorAll('#hits a')].map(a => a.href); }
      }
      frame.remove(); resolve(page);
    };
    frame.src = url; document.body.appendChild(frame);
  });
}
(async () => {
  while (queue.length) {
    const url = queue.shift(); if (seen.has(url)) continue; seen.add(url);
    const page = await visit(url); pages.push(page);
    for (const link of page.links || []) { const u = link.split('#')[0].split('?')[0]; if (u.endsWith('.html') && !seen.has(u)) queue.push(u); }
  }
  document.getElementById('out').textContent = JSON.stringify(pages);
})();
</script></body></html>""" % (json.dumps(queries), json.dumps(start)))
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", f"--user-data-dir={work / 'profile'}",
         "--virtual-time-budget=60000", "--dump-dom", harness.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    found = out.stdout.split('<pre id="out">', 1)[-1].split("</pre>", 1)[0]
    assert found and found != "pending", f"the harness did not finish in Chromium: {out.stderr[-2000:]}"
    return json.loads(html.unescape(found))


def _local(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", f"the atlas links outside itself: {url}"
    return Path(unquote(parsed.path))


def test_atlas_opens_in_chromium_with_every_link_and_picture_resolving(built, tmp_path):
    store, model, result = built.store, built.model, built.result
    site = Path(result.out)
    classes = model_registry.classes(store, model)[:3]
    concept_page = site / "concepts" / "0-goldfinch.html"
    top = top_tokens(store, model, classes[0], k=SMALL.top_k, baseline="frequency", run=result.run_id)
    token = top.rows[0].token
    pages = _browse(site, tmp_path, ["goldfinch", str(token), "zzz"])

    by_path = {_local(p["url"]): p for p in pages}
    on_disk = set(site.rglob("*.html"))
    assert set(by_path) == on_disk, "every page is reachable from index.html, and every link to a page loads"
    assert len(on_disk) == 1 + result.concepts + result.tokens == 1 + 3 + result.tokens
    for path, page in by_path.items():
        assert "error" not in page, f"{path} did not load"
        broken = [i["src"] for i in page["imgs"] if not i["ok"]]
        assert not broken and page["imgs"], f"{path}: pictures that do not decode: {broken[:3]}"
        assert all(_local(link).exists() for link in page["links"]), f"{path} has a dead link"

    concept = by_path[concept_page]
    assert concept["h1"][0].startswith("goldfinch")
    assert concept["salient"] == [str(r.token) for r in top.rows]  # T*_concept in the DOM, in order
    assert concept["baseline"] == [str(b.token) for b in top.baseline]
    crops = [i for i in concept["imgs"] if "/img/" in i["src"]]
    assert len(crops) >= SMALL.top_k  # swatches, crops, overlays

    usage = token_usage(store, model, token, top=SMALL.token_classes, run=result.run_id)
    token_page = by_path[site / "tokens" / f"{token}.html"]
    assert token_page["h1"] == [f"token {token}"]
    assert [u.class_name for u in usage.salient] == token_page["classes"][:len(usage.salient)]  # `cortex token`'s answer
    assert "goldfinch" in token_page["classes"]

    hits = by_path[site / "index.html"]["filter"]
    assert concept_page.as_uri() in hits["goldfinch"]
    assert (site / "tokens" / f"{token}.html").as_uri() in hits[str(token)]
    assert concept_page.as_uri() in hits[str(token)]  # the concepts whose T*_concept holds the token
    assert hits["zzz"] == []

    shot = tmp_path / "concept.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile2'}",
                    "--hide-scrollbars", "--window-size=1200,900", f"--screenshot={shot}", concept_page.as_uri()],
                   capture_output=True, timeout=120)
    picture = Image.open(shot).convert("L")
    assert picture.size == (1200, 900)
    assert picture.getextrema()[1] - picture.getextrema()[0] > 100  # not a blank page


def test_every_local_reference_in_the_html_exists(built):
    """The same check without a browser: every href/src of every written page names a file of the site."""
    result = built.result
    site = Path(result.out)
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, f"{page} reaches the network"
        for ref in re.findall(r'(?:href|src)="([^"#?]+)', text):
            assert (page.parent / html.unescape(ref)).resolve().is_file(), f"{page.relative_to(site)}: {ref} does not exist"
    manifest = json.loads((site / "atlas.json").read_text())
    assert set(manifest["pages"]) == {str(p.relative_to(site)) for p in site.rglob("*.html")} | {"atlas.css"}


def test_rebuilds_rewrite_only_pages_whose_data_changed(built, tmp_path):
    store, site = _copy(built, tmp_path)
    tiny_model, info, classes, first = built.model, built.extractor, built.classes, built.result
    assert first.unchanged == 0 and "index.html" in first.written and first.grids_decoded > 0

    def files():
        return {p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}

    def same_as_from_scratch(when: str) -> None:
        """Every page an incremental build left is the page a full rebuild writes."""
        fresh = tmp_path / "fresh"
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(site, fresh)
        assert build_atlas(store, tiny_model, fresh, settings=SMALL, force=True).grids_decoded == 0
        pages = {p.relative_to(fresh): p.read_bytes() for p in fresh.rglob("*.html")}
        assert pages == {p.relative_to(site): p.read_bytes() for p in site.rglob("*.html")}, when

    before = files()
    second = build_atlas(store, tiny_model, site, settings=SMALL)
    assert (second.written, second.removed, second.pictures_written, second.grids_decoded) == ([], [], 0, 0)
    assert second.unchanged == len(first.written)  # every page and the stylesheet
    assert files() == before, "a build with nothing changed touches no file"

    # class 0 has 7 stored images and 5 indexed: index the other two; only its pages may change
    index_jobs(store, tiny_model, info, [IndexJob(classes[0])], n_images=7, settings=SALIENCY, extractor=ToyExtractor())
    third = build_atlas(store, tiny_model, site, settings=SMALL)
    concept = "concepts/0-goldfinch.html"
    assert concept in third.written and "index.html" in third.written
    assert not [p for p in third.written if p.startswith("concepts/") and p != concept]
    with store.session() as s:
        used = {int(t) for t in s.scalars(select(RunTokenCountRow.token).where(RunTokenCountRow.class_pk == classes[0].pk))}
    assert {p for p in third.written if p.startswith("tokens/")} <= {f"tokens/{t}.html" for t in used}
    after = files()
    for other in ("concepts/1-water-ouzel.html", "concepts/2-black-grouse.html", "atlas.css"):
        assert after[other] == before[other]
    same_as_from_scratch("after indexing more images of one class")

    # an edit from class 1 to class 2 and a concept search of class 1: those two concept pages, nothing else
    with store.session() as s:
        blob = s.scalars(select(ImageRow.tokens).where(ImageRow.class_pk == classes[1].pk).order_by(ImageRow.id).limit(1)).one()
    grid = np.frombuffer(blob, dtype="<u2").copy()
    grid[4 * 16 + 4] = 63
    edit = NewEdit(tiny_model.id, info.id, 1, 2, "token", "4:8,4:8", blob, grid.astype("<u2").tobytes(), "{}",
                   json.dumps([{"scorer": "judge:resnet", "source_before": 0.9, "source_after": 0.2, "target_before": 0.05,
                                "target_after": 0.7}]), "source.png")
    with pending_edit(store, edit) as row:
        row.output_path = "edited.png"
    insert_restarts(store, [dict(
        search_key="f" * 64, model_id=tiny_model.id, extractor_id=info.id, class_pk=classes[1].pk, region="0:16,0:16", init="random",
        params="{}", restart=0, seed=7, tokens=blob, snapshots=b"", t_star=json.dumps([[3, 40], [5, 12]]), objective=2.5, p_target=0.9,
        judges=json.dumps({"resnet": 0.8}),
    )])
    fourth = build_atlas(store, tiny_model, site, settings=SMALL)
    assert sorted(p for p in fourth.written if p.endswith(".html")) == ["concepts/1-water-ouzel.html", "concepts/2-black-grouse.html"]
    assert fourth.pictures_written == 3  # the edit's source and result, the searched grid
    page = (site / "concepts/1-water-ouzel.html").read_text()
    assert "edit 1: water ouzel → <b>black grouse</b>" in page and "judge:resnet P(target) 0.05 → 0.70" in page
    assert "Optimised grids" in page and 'href="../tokens/3.html">3</a>×40' in page
    same_as_from_scratch("after an edit and a search")

    # a stored evaluation: every concept page is recomputed, but only those it says something about are rewritten
    plot = tmp_path / "localization.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(plot)
    result = {"ns": [1, 5], "n_images": 12, "inside_fraction": 0.5, "object_share": 0.2,
              "methods": {"ce": {"per_class_precision": {"goldfinch": 0.5, "water ouzel": 0.25}, "precision": {"1": 0.75, "5": 0.375},
                                 "pointing_game": 0.625}}}
    insert_evaluation(store, tiny_model.id, "localization", "{}", json.dumps(result), str(plot))
    fifth = build_atlas(store, tiny_model, site, settings=SMALL)
    assert sorted(p for p in fifth.written if p.endswith(".html")) == [
        "concepts/0-goldfinch.html", "concepts/1-water-ouzel.html", "evaluations.html", "index.html"]
    assert "precision@5" in (site / "concepts/0-goldfinch.html").read_text() and "ce 0.50" in (site / "concepts/0-goldfinch.html").read_text()
    # the evaluations page carries the stored run's table and plot; the index links to it
    page = (site / "evaluations.html").read_text()
    assert "<td>CORTEX CE</td><td>0.750</td><td>0.375</td><td>0.625</td>" in page and 'id="localization"' in page
    assert 'href="evaluations.html#localization"' in (site / "index.html").read_text()

    same_as_from_scratch("after a new evaluation")

    # a narrower atlas in the same directory drops the other concepts' pages and their unused pictures
    sixth = build_atlas(store, tiny_model, site, classes=[classes[2]], settings=SMALL)
    assert "concepts/0-goldfinch.html" in sixth.removed and not (site / "concepts/0-goldfinch.html").exists()
    manifest = json.loads((site / "atlas.json").read_text())
    referenced = {Path(p).name for entry in manifest["pages"].values() for p in entry["pictures"]}
    assert {p.name for p in (site / "img").iterdir()} == referenced
    store.close()


def test_force_rewrites_every_page(built, tmp_path):
    result = built.result
    site = tmp_path / "copy"
    shutil.copytree(result.out, site)
    again = build_atlas(built.store, built.model, site, settings=SMALL, force=True)
    assert len(again.written) == len(result.written) and again.unchanged == 0
    assert again.grids_decoded == 0  # pictures are named by content: nothing to redraw
    narrower = build_atlas(built.store, built.model, site, classes=built.classes[2:3], settings=SMALL, force=True)
    assert "concepts/0-goldfinch.html" in narrower.removed and not (site / "concepts/0-goldfinch.html").exists()


def test_atlas_of_reads_page_options_and_names_classes_or_concepts(built, tmp_path):
    small = dict(k=2, crops=1, neighbours=0, baselines=[])
    one = atlas_of(built.store, built.model, tmp_path / "one", classes="black grouse", **small)
    assert (one.concepts, one.named_concepts, one.run_id) == (1, 0, built.result.run_id)
    assert (tmp_path / "one" / "concepts/2-black-grouse.html").is_file() and not (tmp_path / "one" / "concepts/0-goldfinch.html").exists()
    assert "top-k 2, 1 crops per token, baselines: none" in (tmp_path / "one" / "index.html").read_text()
    concepts.add_concept(built.store, built.model, "pair", classes=built.classes[:2])
    try:
        pair = atlas_of(built.store, built.model, tmp_path / "pair", classes=["pair"], **small)
        assert (pair.concepts, pair.named_concepts) == (2, 1)  # the concept's page and its members' class pages
        assert (tmp_path / "pair" / "named" / "pair.html").is_file()
    finally:
        concepts.remove_concept(built.store, built.model, "pair")


def test_nearest_neighbours_match_brute_force():
    torch.manual_seed(0)
    book = torch.randn(40, 6)
    book[7] = book[3]  # a tie at distance 0: the smaller id comes first
    found = nearest_neighbours(book, [3, 7, 0], 4)
    dist = torch.cdist(book.double(), book.double())
    for t in (3, 7, 0):
        others = sorted((i for i in range(40) if i != t), key=lambda i: (float(dist[t, i]), i))[:4]
        assert [n for n, _ in found[t]] == others
        assert [d for _, d in found[t]] == pytest.approx([float(dist[t, i]) for i in others], abs=1e-6)
    assert found[3][0] == (7, pytest.approx(0.0, abs=1e-6)) and found[7][0][0] == 3


def cli(url, *args):
    return runner.invoke(app, ["--db", url, *args])


def test_cli_writes_json_and_errors_are_one_line(built, tmp_path, db_url, tiny_model):
    url = built.url
    shutil.copytree(built.result.out, tmp_path / "one")  # an earlier atlas to update: most pictures exist already
    args = ["atlas", "--model", "tiny", "--classes", "goldfinch", "-k", "2", "--crops", "1", "--neighbours", "0", "--out", str(tmp_path / "one")]
    res = cli(url, *args, "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["concepts"] == 1 and Path(payload["index"]).is_file() and payload["index"].endswith("index.html")
    assert "concepts/1-water-ouzel.html" in payload["removed"]
    res = cli(url, *args)
    assert res.exit_code == 0 and "wrote 0 files" in res.stdout and "open " in res.stdout

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    cases = [
        (url, ["--classes", "goldfnch"], "did you mean 'goldfinch'"),
        (url, ["--classes", "analog clock"], "has no indexed train images"),
        (url, ["-k", "0"], "-k must be >= 1"),
        (url, ["--neighbours", "-1"], "--neighbours must be >= 0"),
        (url, ["--baseline", "freq"], "--baseline must be among"),
        (url, ["--extractor", "nope"], "nope"),
        (url, ["--run", "99"], "saliency run 99 does not exist"),
        (url, ["--out", str(tmp_path / "busy")], "holds no cortex atlas"),
        (db_url, [], "nothing is indexed yet for model 'tiny'"),  # a fresh database with the tiny model
    ]
    for db, extra, message in cases:
        args = ["atlas", "--model", "tiny", "--out", str(tmp_path / "site")]
        if "--out" in extra:
            args = ["atlas", "--model", "tiny"]
        res = cli(db, *args, *extra)
        err = res.stderr.strip()
        assert res.exit_code == 1 and message in err and len(err.splitlines()) == 1 and "Traceback" not in res.output, (extra, res.output)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
