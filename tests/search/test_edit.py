"""`edit_image` on the tiny taming model with a small CE registered through the extractor model_registry."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sqlalchemy import select

from cortex_cli.models import registry as model_registry
from cortex_cli.backends.base import to_pil
from cortex_cli.search.edit import edit_image, edit_picture
from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.registry import register_extractor
from cortex_cli.images.figures import edit_strip
from cortex_cli.search.token_selection import OptimizeSettings
from cortex_cli.images.pngmeta import read_png, save_png
from cortex_cli.search.regions import parse_region
from cortex_cli.store.schema import EditRow
from cortex_cli.images.token_blobs import unpack_tokens


def register_tiny_ce(store, model, tmp_path, name="ce"):
    """A randomly initialised small CE (d=16, width 8) saved and registered like a trained one."""
    cfg = ExtractorConfig(arch="ce", in_channels=model.embed_dim, grid=model.grid, width=8, n_classes=model.n_classes, fc_width=16)
    torch.manual_seed(0)
    net = build_extractor(cfg)
    path = tmp_path / f"extractor_{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return register_extractor(store, model, name, cfg, {"epochs": 0}, path, {})


def tiny_png(model, path, seed=0, class_id=0, model_name=None):
    """A PNG of random tokens decoded by `model`, carrying its tokens (like `cortex generate --out`)."""
    vqgm = model_registry.load_model(model)
    tokens = torch.randint(0, model.n_embed, (model.grid, model.grid), generator=torch.Generator().manual_seed(seed))
    save_png(to_pil(vqgm.decode_tokens(tokens[None]))[0], path, tokens, model_name or model.name, {"class_id": class_id}, n_embed=model.n_embed)
    return tokens


@pytest.fixture
def edit_env(store, tiny_model, tmp_path):
    register_tiny_ce(store, tiny_model, tmp_path)
    src = tmp_path / "src" / "bird.png"
    tokens = tiny_png(tiny_model, src)
    return store, tiny_model, src, tokens, tmp_path / "out"


def _edits(store):
    with store.session() as s:
        return s.scalars(select(EditRow)).all()


def test_png_round_trip_preserves_tokens_exactly(tmp_path, tiny_model):
    tokens = tiny_png(tiny_model, tmp_path / "a.png", seed=4)
    back = read_png(tmp_path / "a.png")
    assert torch.equal(back.tokens, tokens) and back.model_name == "tiny" and back.meta["class_id"] == 0


def test_edit_writes_pngs_row_and_keeps_outside_tokens(edit_env):
    store, model, src, tokens, out = edit_env
    target = model_registry.resolve_class(store, model, "water ouzel")
    region = parse_region("4:8,4:8", model.grid)
    settings = OptimizeSettings(steps=12, seed=1, init="random")
    result = edit_image(store, model, src, target, region, settings, out_dir=out, save_every=5)
    # tokens: exactly the source outside the region, and the changed list matches the grids
    result_tokens = torch.tensor(result.result_tokens)
    mask = region.mask(model.grid)
    assert torch.equal(torch.tensor(result.source_tokens), tokens)
    assert torch.equal(result_tokens[~mask], tokens[~mask])
    assert {c.position for c in result.changed} == set((result_tokens != tokens).reshape(-1).nonzero().flatten().tolist())
    assert all(mask[c.row, c.col] and tokens[c.row, c.col] == c.old and result_tokens[c.row, c.col] == c.new for c in result.changed)
    assert result.changed  # random init over 64 tokens: the region cannot come back as the source
    # files: final PNG carries the result tokens (edits chain), snapshots at 5 and 10, one strip
    final = read_png(result.output_path)
    assert torch.equal(final.tokens, result_tokens) and final.model_name == "tiny"
    assert final.meta["edit_id"] == result.edit_id and final.meta["target_class_id"] == 1
    assert [p.name for p in result.snapshot_paths] == [f"bird.edit{result.edit_id}-water-ouzel-step00005.png", f"bird.edit{result.edit_id}-water-ouzel-step00010.png"]
    assert torch.equal(read_png(result.snapshot_paths[0]).tokens[~mask], tokens[~mask])
    strip = Image.open(result.strip_path)
    assert strip.width > 4 * 2 * model.image_size  # source + 2 snapshots + final, each upscaled x2
    # probabilities: the extractor (no judges exist for the tiny model: said in a notice)
    assert [p.scorer for p in result.probabilities] == ["extractor:ce"]
    assert result.source_class == 0 and result.source_class_name == "goldfinch"
    assert any("no judge" in n for n in result.notices)
    # the stored row
    (row,) = _edits(store)
    assert (row.id, row.method, row.region, row.target_class, row.source_class) == (result.edit_id, "token", "4:8,4:8", 1, 0)
    assert torch.equal(unpack_tokens(row.result_tokens, model.n_embed, model.grid), result_tokens)
    assert torch.equal(unpack_tokens(row.source_tokens, model.n_embed, model.grid), tokens)
    assert json.loads(row.params)["steps"] == 12 and json.loads(row.probabilities)[0]["scorer"] == "extractor:ce"
    assert row.output_path == str(result.output_path.resolve())


def test_edits_chain_and_plain_pictures_are_encoded(edit_env):
    store, model, src, tokens, out = edit_env
    target = model_registry.resolve_class(store, model, "black grouse")
    region = parse_region("0:2,0:3", model.grid)
    first = edit_image(store, model, src, target, region, OptimizeSettings(steps=3, init="random"), out_dir=out)
    second = edit_image(store, model, first.output_path, target, parse_region("10,10", model.grid), OptimizeSettings(steps=3), out_dir=out)
    assert second.source_tokens == first.result_tokens
    assert not any("encoded" in n for n in second.notices)
    plain = out / "plain.jpg"
    Image.open(src).convert("RGB").resize((100, 80)).save(plain)
    third = edit_image(store, model, plain, target, region, OptimizeSettings(steps=2), out_dir=out)
    assert any("carries no cortex tokens; encoded" in n for n in third.notices)
    assert torch.tensor(third.source_tokens).shape == (model.grid, model.grid)
    assert len(_edits(store)) == 3


def test_same_seed_same_edit(edit_env):
    store, model, src, tokens, out = edit_env
    target = model_registry.resolve_class(store, model, 3)
    region = parse_region("2:6,2:6", model.grid)
    a = edit_image(store, model, src, target, region, OptimizeSettings(steps=6, seed=5, init="random"), out_dir=out / "a")
    b = edit_image(store, model, src, target, region, OptimizeSettings(steps=6, seed=5, init="random"), out_dir=out / "b")
    assert a.result_tokens == b.result_tokens and a.edit_id != b.edit_id


def test_edit_picture_reads_the_model_from_the_png_and_names_as_text(edit_env):
    store, model, src, tokens, out = edit_env
    settings = OptimizeSettings(steps=4, seed=2, init="random")
    by_name = edit_picture(store, src, "dipper", "4:8,4:8", settings, out_dir=out / "a")  # the PNG names 'tiny'; a synonym
    direct = edit_image(store, model, src, model_registry.resolve_class(store, model, 1), parse_region("4:8,4:8", model.grid), settings,
                        out_dir=out / "b")
    assert (by_name.model, by_name.target_class, by_name.region) == ("tiny", 1, "4:8,4:8")
    assert by_name.result_tokens == direct.result_tokens
    with pytest.raises(CortexError, match="outside the 16x16 token grid"):
        edit_picture(store, src, 1, "14:18,0:4", settings, out_dir=out / "c")
    with pytest.raises(CortexError, match="did you mean"):
        edit_picture(store, src, "dippr", "all", settings, model_name="tiny", out_dir=out / "c")
    assert not (out / "c").exists() and len(_edits(store)) == 2


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("wrong model", "was made by model 'other'; pass --model other"),
        ("steps", "--steps must be a positive"),
        ("region", "outside the 16x16 token grid"),
        ("truncated", "damaged or truncated"),
        ("no extractor", "has no extractor named 're'"),
        ("save_every", "--save-every must be a positive"),
    ],
)
def test_bad_input_writes_nothing(edit_env, case, fragment):
    from cortex_cli.search.regions import Region

    store, model, src, tokens, out = edit_env
    target = model_registry.resolve_class(store, model, 1)
    region, settings, kwargs, path = parse_region("4:8,4:8", 16), OptimizeSettings(steps=3), {}, src
    if case == "wrong model":
        path = src.parent / "other.png"
        tiny_png(model, path, model_name="other")
    elif case == "steps":
        settings = OptimizeSettings(steps=0)
    elif case == "region":
        region = Region((14, 18), (0, 4))
    elif case == "truncated":
        path = src.parent / "cut.png"
        path.write_bytes(src.read_bytes()[:200])
    elif case == "no extractor":
        kwargs["extractor_name"] = "re"
    elif case == "save_every":
        kwargs["save_every"] = 0
    with pytest.raises(CortexError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        edit_image(store, model, path, target, region, settings, out_dir=out, **kwargs)
    assert not out.exists() and _edits(store) == []


def test_edit_strip_outlines_region_on_every_tile():
    tiles = [Image.new("RGB", (16, 16), (0, 0, 255)) for _ in range(3)]
    strip = edit_strip(tiles, ["source", "step 1", "final"], ((0, 2), (0, 2)), grid=4, scale=2)
    assert strip.height > 32
    red = [(x, y) for x in range(strip.width) for y in range(strip.height) if strip.getpixel((x, y)) == (255, 0, 0)]
    assert len({x // (32 + 4) for x, _ in red}) == 3  # a red outline in each of the three tiles
