"""A writer process of the concurrency tests: opens the store by URL, generates and indexes.

Kept apart from the test module so that the forkserver can import it (and torch, cortex) once,
and every writer starts as a cheap fork of that server instead of a fresh interpreter.
"""

from __future__ import annotations

import traceback

import torch

from cortex_cli.models import registry as model_registry
from cortex_cli.backends import taming_shim
from cortex_cli.extractors.registry import ensure_bundled_extractors
from cortex_cli.images.generation import generate
from cortex_cli.index.build import index_class
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.database import open_store

from index_helpers import ToyExtractor, ToyInfo

taming_shim.install()  # taming and Lightning take seconds to import: once, in the forkserver
import taming.models.cond_transformer  # noqa: E402,F401

SETTINGS = SaliencySettings(samples=2, top_n=4)
OWN_IMAGES = 4  # train images of the writer's own class
SHARED_IMAGES = 6  # val images of the class every writer works on


def write(url: str, own_class: int, shared_class: int, extractor_id: int, batch_size: int, barrier, results) -> None:
    """Everything a `cortex` rank would do at once with its siblings; puts (own_class, 'ok'|'error', details)."""
    torch.set_num_threads(1)
    try:
        store = open_store(url)
        barrier.wait(120)  # all writers start together, and race first on the shared class's seeds
        model_registry.ensure_bundled(store)  # every CLI process does this on a fresh database
        ensure_bundled_extractors(store)
        model = model_registry.get_model(store, "tiny")
        own, shared = model_registry.resolve_class(store, model, own_class), model_registry.resolve_class(store, model, shared_class)
        info, ext = ToyInfo(extractor_id, "ce"), ToyExtractor()
        gen_shared = generate(store, model, shared, SHARED_IMAGES, split="val", batch_size=batch_size)
        idx_shared = index_class(store, model, info, shared, split="val", n_images=SHARED_IMAGES, settings=SETTINGS,
                                 batch_size=batch_size, extractor=ext)
        gen_own = generate(store, model, own, OWN_IMAGES, batch_size=batch_size)
        idx_own = index_class(store, model, info, own, n_images=OWN_IMAGES, settings=SETTINGS, batch_size=batch_size, extractor=ext)
        store.close()
        results.put((own_class, "ok", {
            "own": (gen_own.added, gen_own.skipped, gen_own.image_ids),
            "shared": (gen_shared.added, gen_shared.skipped, gen_shared.image_ids),
            "runs": (idx_own.run_id, idx_shared.run_id),
            "indexed": (idx_own.images, idx_shared.images),
        }))
    except BaseException:
        results.put((own_class, "error", traceback.format_exc()))
