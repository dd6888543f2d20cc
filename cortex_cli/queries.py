"""Concept-level questions answered in SQL (GROUP BY in the database, never all rows in Python).

- `top_tokens`: T*_concept, the k tokens occurring most often in the per-image top-n sets of a class
  (paper §3.3 eq. 6, "Freq"), with the frequency baseline (most frequent tokens over all positions,
  from `token_counts`) and the overlap of the two lists.
- `token_usage`: which classes use a token most, as a salient token and as a plain occurrence.

Both read one saliency run (`pick_run`: the newest run of the extractor that covers the class).
Ranks are 1-based; ties are broken by the smaller token (or class) id.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, text

from .errors import CortexError
from .registry import ClassInfo, ModelInfo, classes
from .store.database import Store
from .store.schema import ExtractorRow, SaliencyRunRow


@dataclass(frozen=True)
class RunInfo:
    """A saliency run: its extractor and parameters."""

    id: int
    extractor_id: int
    extractor: str
    samples: int
    alpha: float
    top_n: int
    reduce: str
    precision: str
    seed: int


@dataclass
class TokenRow:
    """One token of T*_concept."""

    rank: int
    token: int
    count: int  # occurrences in the per-image top-n sets
    n_images: int  # images whose top-n contains the token
    mean_tsv: float


@dataclass
class BaselineRow:
    """One token of the frequency baseline (all positions of all images, no extractor)."""

    rank: int
    token: int
    count: int
    n_images: int


@dataclass
class TopTokensResult:
    """`cortex top-tokens`: the concept's salient tokens, optionally beside the baseline."""

    model: str
    class_id: int
    class_name: str
    extractor: str
    run_id: int
    split: str
    k: int
    images_indexed: int
    rows: list[TokenRow]
    baseline: list[BaselineRow] | None = None
    baseline_images: int | None = None  # images counted by the baseline (all stored of the split)
    overlap: int | None = None  # tokens in both lists
    overlap_fraction: float | None = None  # overlap / len(rows)
    jaccard: float | None = None


@dataclass
class ClassUsage:
    """How much one class uses a token."""

    class_rank: int  # rank of this class among classes using the token
    class_id: int
    class_name: str
    count: int
    n_images: int
    token_rank: int  # rank of the token within this class's list (1 = its most used token)


@dataclass
class TokenUsage:
    """`cortex token`: classes that use a token most."""

    model: str
    token: int
    extractor: str | None
    run_id: int | None
    split: str
    salient: list[ClassUsage]  # from the saliency index (empty if nothing indexed)
    occurrence: list[ClassUsage]  # from token_counts


def _run_info(row: SaliencyRunRow, extractor_name: str) -> RunInfo:
    return RunInfo(row.id, row.extractor_id, extractor_name, row.samples, row.alpha, row.top_n, row.reduce, row.precision, row.seed)


def extractor_id(store: Store, model: ModelInfo, name: str) -> int:
    """The id of a model's extractor by name; CortexError (with what to run) if there is none."""
    from .extractors.registry import get_extractor

    return get_extractor(store, model, name).id


def runs(store: Store, model: ModelInfo, extractor: str | None = None) -> list[RunInfo]:
    """Saliency runs of a model, newest first (optionally of one extractor)."""
    query = (
        select(SaliencyRunRow, ExtractorRow.name).join(ExtractorRow, ExtractorRow.id == SaliencyRunRow.extractor_id)
        .where(SaliencyRunRow.model_id == model.id).order_by(SaliencyRunRow.id.desc())
    )
    if extractor is not None:
        query = query.where(SaliencyRunRow.extractor_id == extractor_id(store, model, extractor))
    with store.session() as s:
        return [_run_info(r, name) for r, name in s.execute(query).all()]


def _index_hint(cls: ClassInfo | None, extractor: str | None) -> str:
    target = f"'{cls.name}'" if cls is not None else "<class>"
    ext = f" --extractor {extractor}" if extractor else ""
    return f"run `cortex index --class {target}{ext}` first"


def pick_run(store: Store, model: ModelInfo, cls: ClassInfo | None = None, *, extractor: str | None = None, run: int | None = None) -> RunInfo:
    """The run to read: `run` if given, else the newest run (of `extractor`) that covers `cls`.

    Raises:
        CortexError: the extractor does not exist, or nothing (of this class) is indexed yet.
    """
    candidates = runs(store, model, extractor)
    if run is not None:
        chosen = [r for r in candidates if r.id == run]
        if not chosen:
            raise CortexError(f"saliency run {run} does not exist for model {model.name!r}")
        return chosen[0]
    if cls is None:
        if not candidates:
            raise CortexError(f"nothing is indexed yet for model {model.name!r}; {_index_hint(None, extractor)}")
        return candidates[0]
    with store.session() as s:
        for r in candidates:
            hit = s.execute(
                text("SELECT 1 FROM salient_tokens WHERE run_id = :r AND class_pk = :c LIMIT 1"), {"r": r.id, "c": cls.pk}
            ).first()
            if hit is not None:
                return r
    raise CortexError(f"class {cls.name!r} is not indexed yet; {_index_hint(cls, extractor)}")


_TOP_SQL = text(
    """
    SELECT st.token, COUNT(*) AS n, COUNT(DISTINCT st.image_id) AS n_images, AVG(st.tsv) AS mean_tsv
    FROM salient_tokens AS st JOIN images AS i ON i.id = st.image_id
    WHERE st.run_id = :run AND st.class_pk = :cls AND i.split = :split
    GROUP BY st.token ORDER BY n DESC, st.token ASC LIMIT :k
    """
)
_IMAGES_SQL = text(
    """
    SELECT COUNT(*) FROM saliency_maps AS sm JOIN images AS i ON i.id = sm.image_id
    WHERE sm.run_id = :run AND i.class_pk = :cls AND i.split = :split
    """
)
_BASELINE_SQL = text(
    """
    SELECT token, count, n_images FROM token_counts
    WHERE model_id = :model AND class_pk = :cls AND split = :split
    ORDER BY count DESC, token ASC LIMIT :k
    """
)
_STORED_SQL = text("SELECT COUNT(*) FROM images WHERE class_pk = :cls AND split = :split")


def top_tokens(
    store: Store,
    model: ModelInfo,
    cls: ClassInfo,
    *,
    extractor: str | None = None,
    k: int = 100,
    baseline: bool = False,
    run: int | None = None,
    split: str = "train",
) -> TopTokensResult:
    """T*_concept of a class: the k tokens most frequent in its images' top-n sets.

    Args:
        store: the open database.
        model, cls: the model and the class (concept).
        extractor: read the newest run of this extractor ('ce', 're', ...); None: any extractor's newest.
        k: how many tokens (the paper uses 100).
        baseline: also list the k most frequent tokens over all positions of the class's images.
        run: read this saliency run id instead.
        split: which images of the class to count.

    Returns:
        TopTokensResult (rows ordered by count, then token id).

    Raises:
        CortexError: k <= 0, unknown extractor, or the class is not indexed yet.
    """
    if k <= 0:
        raise CortexError(f"-k must be a positive number of tokens, got {k}")
    chosen = pick_run(store, model, cls, extractor=extractor, run=run)
    params = {"run": chosen.id, "cls": cls.pk, "split": split, "k": k, "model": model.id}
    with store.session() as s:
        n_images = int(s.execute(_IMAGES_SQL, params).scalar() or 0)
        if n_images == 0:
            raise CortexError(f"class {cls.name!r} has no indexed {split} images; {_index_hint(cls, extractor)} (with --split {split})")
        rows = [TokenRow(i + 1, int(t), int(n), int(ni), float(m)) for i, (t, n, ni, m) in enumerate(s.execute(_TOP_SQL, params))]
        result = TopTokensResult(model.name, cls.class_id, cls.name, chosen.extractor, chosen.id, split, k, n_images, rows)
        if baseline:
            base = [BaselineRow(i + 1, int(t), int(n), int(ni)) for i, (t, n, ni) in enumerate(s.execute(_BASELINE_SQL, params))]
            ours, theirs = {r.token for r in rows}, {r.token for r in base}
            both = len(ours & theirs)
            union = len(ours | theirs)
            result.baseline = base
            result.baseline_images = int(s.execute(_STORED_SQL, params).scalar() or 0)
            result.overlap = both
            result.overlap_fraction = both / len(ours) if ours else 0.0
            result.jaccard = both / union if union else 0.0
    return result


_SALIENT_CLASSES_SQL = text(
    """
    SELECT st.class_pk, COUNT(*) AS n, COUNT(DISTINCT st.image_id) AS n_images
    FROM salient_tokens AS st JOIN images AS i ON i.id = st.image_id
    WHERE st.run_id = :run AND st.token = :token AND i.split = :split
    GROUP BY st.class_pk
    """
)
# the token's rank inside each listed class: 1 + tokens with a higher count (ties: smaller id first)
_SALIENT_RANK_SQL = text(
    """
    WITH c AS (
        SELECT st.class_pk, st.token, COUNT(*) AS n
        FROM salient_tokens AS st JOIN images AS i ON i.id = st.image_id
        WHERE st.run_id = :run AND st.class_pk IN :classes AND i.split = :split
        GROUP BY st.class_pk, st.token
    )
    SELECT c.class_pk, 1 + SUM(CASE WHEN c.n > t.n OR (c.n = t.n AND c.token < t.token) THEN 1 ELSE 0 END)
    FROM c JOIN c AS t ON t.class_pk = c.class_pk AND t.token = :token
    GROUP BY c.class_pk
    """
).bindparams(bindparam("classes", expanding=True))
_OCCURRENCE_SQL = text(
    """
    SELECT class_pk, count, n_images FROM token_counts
    WHERE model_id = :model AND token = :token AND split = :split
    ORDER BY count DESC, class_pk ASC LIMIT :top
    """
)
_OCCURRENCE_RANK_SQL = text(
    """
    SELECT t.class_pk, 1 + (
        SELECT COUNT(*) FROM token_counts AS o
        WHERE o.model_id = t.model_id AND o.class_pk = t.class_pk AND o.split = t.split
          AND (o.count > t.count OR (o.count = t.count AND o.token < t.token))
    )
    FROM token_counts AS t
    WHERE t.model_id = :model AND t.token = :token AND t.split = :split AND t.class_pk IN :classes
    """
).bindparams(bindparam("classes", expanding=True))


def token_usage(
    store: Store,
    model: ModelInfo,
    token: int,
    *,
    top: int = 20,
    extractor: str | None = None,
    run: int | None = None,
    split: str = "train",
) -> TokenUsage:
    """Which classes use `token` most, as a salient token (index) and as a plain occurrence.

    Args:
        store: the open database.
        model: the model whose codebook the token belongs to.
        token: a codebook index in [0, K).
        top: how many classes to list for each view.
        extractor: read the newest run of this extractor; None: the newest run of any.
        run: read this saliency run id instead.
        split: which images to count.

    Returns:
        TokenUsage; `salient` is empty when nothing is indexed yet.

    Raises:
        CortexError: token out of range, top <= 0, unknown extractor or run.
    """
    if not 0 <= token < model.n_embed:
        raise CortexError(f"token {token} is outside model {model.name!r}'s codebook (0..{model.n_embed - 1})")
    if top <= 0:
        raise CortexError(f"--top must be a positive number of classes, got {top}")
    by_pk = {c.pk: c for c in classes(store, model)}
    chosen: RunInfo | None
    try:
        chosen = pick_run(store, model, None, extractor=extractor, run=run)
    except CortexError:
        if extractor is not None or run is not None:
            raise
        chosen = None
    params = {"model": model.id, "token": token, "split": split, "top": top}
    salient: list[ClassUsage] = []
    occurrence: list[ClassUsage] = []
    with store.session() as s:
        if chosen is not None:
            params["run"] = chosen.id
            found = sorted(s.execute(_SALIENT_CLASSES_SQL, params).all(), key=lambda r: (-r[1], by_pk[r[0]].class_id))[:top]
            ranks = dict(s.execute(_SALIENT_RANK_SQL, {**params, "classes": [r[0] for r in found]}).all()) if found else {}
            salient = [
                ClassUsage(i + 1, by_pk[pk].class_id, by_pk[pk].name, int(n), int(ni), int(ranks[pk]))
                for i, (pk, n, ni) in enumerate(found)
            ]
        found = s.execute(_OCCURRENCE_SQL, params).all()
        ranks = dict(s.execute(_OCCURRENCE_RANK_SQL, {**params, "classes": [r[0] for r in found]}).all()) if found else {}
        occurrence = [
            ClassUsage(i + 1, by_pk[pk].class_id, by_pk[pk].name, int(n), int(ni), int(ranks[pk]))
            for i, (pk, n, ni) in enumerate(found)
        ]
    return TokenUsage(model.name, token, chosen.extractor if chosen else None, chosen.id if chosen else None, split, salient, occurrence)
