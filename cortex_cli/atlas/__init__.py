"""The token atlas: a static website of the saliency index (`cortex atlas`).

`build_atlas` writes one page per concept and per token, an index page with a filter box, and
content-named pictures decoded in batches on the device; rebuilding rewrites only what changed.
"""

from .build import AtlasResult, atlas_of, build_atlas, nearest_neighbours
from .pages import PageSettings

__all__ = ["AtlasResult", "PageSettings", "atlas_of", "build_atlas", "nearest_neighbours"]
