"""SQLAlchemy 2 typed models of the cortex index. Migrations in `migrations/` create them."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# Names for constraints and indexes created without one (SQLAlchemy's documented convention style), so
# every backend stores the same names and later SQLite batch migrations can find them; an explicit name
# (uq_images_sample, ix_salient_class_token, ...) wins. Migration 0008 renamed what older versions left.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ModelRow(Base):
    """A registered VQGM (a VQ tokenizer and the prior that samples its tokens), loaded by its backend."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    config_path: Mapped[str] = mapped_column(Text)
    ckpt_path: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64))
    n_embed: Mapped[int] = mapped_column(Integer)  # K, codebook size
    embed_dim: Mapped[int] = mapped_column(Integer)  # d, codebook width
    grid: Mapped[int] = mapped_column(Integer)  # m, token grid side
    image_size: Mapped[int] = mapped_column(Integer)
    labels: Mapped[str] = mapped_column(Text)  # 'imagenet', 'mini' or a file path
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the `cortex.backends` entry point that loads it (migration 0009; older rows are taming models)
    backend: Mapped[str] = mapped_column(String(100), server_default="taming")
    # what the backend needs besides the two paths, a JSON object (migration 0014; e.g. LlamaGen's GPT size)
    options: Mapped[str] = mapped_column(Text, server_default="{}")


class ClassRow(Base):
    """A concept (class label) of a model."""

    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("model_id", "class_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(Integer)  # the label the prior is conditioned on
    name: Mapped[str] = mapped_column(Text)
    synonyms: Mapped[str] = mapped_column(Text, default="")  # '|'-separated
    # the verbatim prompt of a prompt concept's class (text-conditional backends; migration 0012); '' samples the name
    prompt: Mapped[str] = mapped_column(Text, server_default="")


class ConceptRow(Base):
    """A named concept of a model (migration 0012): a union of its classes, or a prompt (a class of its own)."""

    __tablename__ = "concepts"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # 'classes' | 'prompt'
    prompt: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConceptMemberRow(Base):
    """One class of a concept, in the order the user named them."""

    __tablename__ = "concept_members"
    __table_args__ = (Index("ix_concept_members_class_pk", "class_pk"),)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concepts.id", ondelete="CASCADE"), primary_key=True)
    class_pk: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class ImageRow(Base):
    """A token grid sampled from a model's prior (or encoded from a picture)."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("model_id", "class_pk", "split", "seed", "sampler", name="uq_images_sample"),
        Index("ix_images_class_split", "class_pk", "split"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    class_pk: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    sampler: Mapped[str] = mapped_column(String(100))  # e.g. 'top_k=100,top_p=1.0,temperature=1.0'
    tokens: Mapped[bytes] = mapped_column(LargeBinary)  # m*m little-endian uint16/int32
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TokenCountRow(Base):
    """Occurrences of a token over all positions of a class's images (frequency baseline)."""

    __tablename__ = "token_counts"
    __table_args__ = (Index("ix_token_counts_token", "model_id", "token"),)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    class_pk: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True)
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    token: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    n_images: Mapped[int] = mapped_column(Integer, default=0)


class ExtractorRow(Base):
    """A trained information extractor f_Y (CE or RE) of a model."""

    __tablename__ = "extractors"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))  # 'ce', 're' or user-chosen
    arch: Mapped[str] = mapped_column(String(16))
    hparams: Mapped[str] = mapped_column(Text)  # JSON
    ckpt_path: Mapped[str] = mapped_column(Text)
    ckpt_sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SaliencyRunRow(Base):
    """The parameters of one saliency pass; rows of the index hang off it."""

    __tablename__ = "saliency_runs"
    __table_args__ = (
        UniqueConstraint("extractor_id", "samples", "alpha", "top_n", "reduce", "precision", "seed", "method", "steps", "baseline",
                         "noise", "target", name="uq_saliency_run"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    extractor_id: Mapped[int] = mapped_column(ForeignKey("extractors.id", ondelete="CASCADE"))
    samples: Mapped[int] = mapped_column(Integer)
    alpha: Mapped[float] = mapped_column(Float)
    top_n: Mapped[int] = mapped_column(Integer)
    reduce: Mapped[str] = mapped_column(String(16))
    precision: Mapped[str] = mapped_column(String(8))
    seed: Mapped[int] = mapped_column(Integer)
    # the attribution method (attribution/METHODS) and integrated-gradients' parameters; unused ones hold neutral values
    method: Mapped[str] = mapped_column(String(40), server_default="smoothgrad")
    steps: Mapped[int] = mapped_column(Integer, server_default="0")
    baseline: Mapped[str] = mapped_column(String(40), server_default="none")
    # SmoothGrad's noise generator (migration 0013): 'philox' (device-side, counter-based; new runs), 'host' (per-image CPU
    # generators: every SmoothGrad run made before 0013), 'none' for methods that draw no noise
    noise: Mapped[str] = mapped_column(String(16), server_default="philox")
    # what the run explains (migration 0012): 'class' (each image's own class logit) or a concept target (`cortex_cli.models.targets`)
    target: Mapped[str] = mapped_column(String(400), server_default="class")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SaliencyMapRow(Base):
    """The full m*m Token Saliency Value map of one image under one run."""

    __tablename__ = "saliency_maps"
    run_id: Mapped[int] = mapped_column(ForeignKey("saliency_runs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    tsv: Mapped[bytes] = mapped_column(LargeBinary)  # m*m float32


class SalientTokenRow(Base):
    """One of an image's top-n tokens by TSV (class denormalised for fast concept queries).

    Derived from the image's `saliency_maps` row and deleted with it (migration 0011's trigger); no foreign keys.
    """

    __tablename__ = "salient_tokens"
    __table_args__ = (
        Index("ix_salient_class_token", "run_id", "class_pk", "token", "image_id", "tsv"),
        Index("ix_salient_token_class", "run_id", "token", "class_pk"),
    )
    # No foreign keys (migration 0011): derived rows, written only by `index.write_index` in the transaction that
    # inserts their FK-checked parent (the saliency_maps row), and deleted with it by 0011's trigger.
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # saliency_runs.id
    image_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # images.id
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 = most salient
    class_pk: Mapped[int] = mapped_column(Integer)  # classes.id
    position: Mapped[int] = mapped_column(Integer)  # row * m + col
    token: Mapped[int] = mapped_column(Integer)
    tsv: Mapped[float] = mapped_column(Float)


class RunTokenCountRow(Base):
    """How often a token is salient (top-n) and present (any position) in a class's images indexed by a run.

    Added once per image, in the transaction that writes the image's map, so it always equals a
    count over exactly the run's indexed images (what `cortex token` reads at any index size).
    Deleted with its (run, split, class) `run_class_counts` row (migration 0011's trigger); no foreign keys.
    """

    __tablename__ = "run_token_counts"
    # one secondary index: a token's classes; a class's rows are a primary-key range
    __table_args__ = (Index("ix_run_token_counts_token", "run_id", "split", "token"),)
    # No foreign keys (migration 0011): derived rows, written only by `index.write_index` in the transaction that
    # inserts the FK-checked saliency_maps rows they count and adds to their (FK-checked) run_class_counts row,
    # and deleted with that row by 0011's trigger.
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # saliency_runs.id
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    class_pk: Mapped[int] = mapped_column(Integer, primary_key=True)  # classes.id
    token: Mapped[int] = mapped_column(Integer, primary_key=True)
    salient: Mapped[int] = mapped_column(Integer, default=0)  # occurrences in the per-image top-n sets
    salient_images: Mapped[int] = mapped_column(Integer, default=0)  # images whose top-n holds it
    occurrences: Mapped[int] = mapped_column(Integer, default=0)  # occurrences over all positions
    occurrence_images: Mapped[int] = mapped_column(Integer, default=0)  # images holding it anywhere


class RunClassCountRow(Base):
    """How many images of a class (and split) a run has indexed."""

    __tablename__ = "run_class_counts"
    run_id: Mapped[int] = mapped_column(ForeignKey("saliency_runs.id", ondelete="CASCADE"), primary_key=True)
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    class_pk: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True)
    images: Mapped[int] = mapped_column(Integer, default=0)


class EditRow(Base):
    """A token-level edit of an image toward a target concept."""

    __tablename__ = "edits"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    extractor_id: Mapped[int | None] = mapped_column(ForeignKey("extractors.id", ondelete="SET NULL"), nullable=True)
    source_class: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_class: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))  # 'token' | 'embedding'
    region: Mapped[str] = mapped_column(String(64))
    source_tokens: Mapped[bytes] = mapped_column(LargeBinary)
    result_tokens: Mapped[bytes] = mapped_column(LargeBinary)
    params: Mapped[str] = mapped_column(Text)  # JSON
    probabilities: Mapped[str] = mapped_column(Text)  # JSON
    source_path: Mapped[str] = mapped_column(Text, default="")
    output_path: Mapped[str] = mapped_column(Text, default="")
    # what the edit optimised (migration 0012): 'class' (target_class's logit) or a concept target (`cortex_cli.models.targets`)
    target: Mapped[str] = mapped_column(String(400), server_default="class")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvaluationRow(Base):
    """The result of one `cortex eval` run (JSON), for `cortex report`."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_model_kind", "model_id", "kind", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text)  # JSON
    result: Mapped[str] = mapped_column(Text)  # JSON
    plot_path: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConceptSearchRow(Base):
    """One restart of an input-independent token search for a concept (paper §3.4, `cortex optimize`).

    `search_key` is the sha256 of the search's identity (model, extractor weights, class, region,
    init, optimiser settings, seed); with `restart` it makes reruns insert-or-skip.
    """

    __tablename__ = "concept_searches"
    __table_args__ = (
        UniqueConstraint("search_key", "restart", name="uq_concept_search"),
        Index("ix_concept_searches_class", "model_id", "class_pk"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    search_key: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    extractor_id: Mapped[int | None] = mapped_column(ForeignKey("extractors.id", ondelete="SET NULL"), nullable=True)
    class_pk: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    region: Mapped[str] = mapped_column(String(64))
    init: Mapped[str] = mapped_column(String(100))  # 'random', 'noise' or 'image:<sha256 of its tokens, 16 hex>'
    params: Mapped[str] = mapped_column(Text)  # JSON
    restart: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)  # derived from the search's identity and the restart
    tokens: Mapped[bytes] = mapped_column(LargeBinary)  # final grid (eq. 9 inside the region), packed like images.tokens
    snapshots: Mapped[bytes] = mapped_column(LargeBinary)  # grids at params' snapshot_steps, concatenated
    t_star: Mapped[str] = mapped_column(Text)  # JSON [[token, positions], ...]: by positions, then token id
    objective: Mapped[float] = mapped_column(Float)  # extractor's target logit (or log-prob) of `tokens`
    p_target: Mapped[float] = mapped_column(Float)  # extractor's softmax P(target) of `tokens`
    judges: Mapped[str] = mapped_column(Text)  # JSON {judge: P(target) of the decoded grid}
    # what the search optimised (migration 0012): 'class' (class_pk's logit) or a concept target (`cortex_cli.models.targets`;
    # class_pk is then the concept's first member)
    target: Mapped[str] = mapped_column(String(400), server_default="class")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
