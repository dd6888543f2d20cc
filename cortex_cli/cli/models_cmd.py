"""`cortex models add|list`."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app, sub_command, workspace
from .options import AsJson
from .render import console, print_json, table

models_app = typer.Typer(help="Register and list VQ generators (the bundled `mini` is always there).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@sub_command(models_app, "add")
def models_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Short name to pass as --model later, e.g. cin."),
    path: Path = typer.Argument(None, help="janus: a local snapshot directory of the weights (config.json, *.safetensors, tokenizer)."),
    backend: str = typer.Option("taming", "--backend", help="Which backend loads it: taming (default), janus, llamagen, or one another package registers."),
    config: Path = typer.Option(None, "--config", help="taming: config yaml (model.target Net2NetTransformer)."),
    ckpt: Path = typer.Option(None, "--ckpt", help="taming: checkpoint, last.ckpt (Lightning), a state dict, or .safetensors."),
    labels: str = typer.Option(None, "--labels", help="Class names: 'imagenet', 'mini' or a TSV file 'id<TAB>name, synonym...'; janus prompts with them."),
    gpt_ckpt: str = typer.Option(None, "--gpt-ckpt", help="llamagen: the GPT checkpoint as released (c2i_L_384.pt; or hf://FoundationVision/LlamaGen/c2i_L_384.pt)."),
    vq_ckpt: str = typer.Option(None, "--vq-ckpt", help="llamagen: the VQ tokenizer checkpoint as released (vq_ds16_c2i.pt)."),
    gpt_model: str = typer.Option(None, "--gpt-model", help="llamagen: GPT-B, GPT-L, GPT-XL, GPT-XXL, GPT-XXXL, GPT-1B or GPT-3B (default: read off the checkpoint)."),
    image_size: int = typer.Option(None, "--image-size", help="llamagen: the pixels per side the GPT was trained for (256 or 384; required)."),
    downsample: int = typer.Option(None, "--downsample", help="llamagen: the VQ's downsampling, 16 (VQ-16, default) or 8 (VQ-8)."),
    as_json: AsJson = False,
) -> None:
    """Register a model, loading it strictly first.

    taming (class-conditional VQGAN + GPT): cortex models add cin --config 2021-04-03T19-39-50_cin_transformer/configs/2021-04-03T19-39-50-project.yaml
    --ckpt 2021-04-03T19-39-50_cin_transformer/checkpoints/last.ckpt --labels imagenet

    janus (DeepSeek Janus-Pro, text-conditional; each class name becomes the prompt "a photo of a NAME"; needs
    pip install "cortex-cli[janus]"): cortex models add janus-pro --backend janus ./Janus-Pro-1B --labels imagenet

    llamagen (LlamaGen class-conditional GPT + VQ-16, FoundationVision/LlamaGen; the official checkpoints are published
    on the Hugging Face Hub at FoundationVision/LlamaGen and linked from the GitHub README; hf:// names need
    pip install "cortex-cli[hub]"): cortex models add lg-l --backend llamagen --gpt-ckpt c2i_L_384.pt
    --vq-ckpt vq_ds16_c2i.pt --gpt-model GPT-L --image-size 384 --labels imagenet

    Any file may be named on the Hub as hf://OWNER/REPO/path (fetched into the Hugging Face cache once).
    """
    info = workspace(ctx).add_model(name, path, backend=backend, config=config, ckpt=ckpt, labels=labels, gpt_ckpt=gpt_ckpt,
                                    vq_ckpt=vq_ckpt, gpt_model=gpt_model, image_size=image_size, downsample=downsample)
    if as_json:
        print_json(info)
    else:
        console.print(f"registered {info.name} ({info.backend}): K={info.n_embed} d={info.embed_dim} grid {info.grid}x{info.grid}, "
                      f"{info.image_size}px, {info.n_classes} classes", highlight=False, soft_wrap=True)


@sub_command(models_app, "list")
def models_list(
    ctx: typer.Context,
    classes: bool = typer.Option(False, "--all-classes", help="List every class of each model, not the first and last few."),
    as_json: AsJson = False,
) -> None:
    """List registered models and their concepts (classes)."""
    models = workspace(ctx).models()
    if as_json:
        print_json(models)
        return
    rows = []
    for m in models:
        names = [c.name for c in m.classes]
        shown = ", ".join(names if classes or len(names) <= 16 else names[:8] + ["..."] + names[-2:])
        rows.append([m.name, m.backend, m.n_embed, m.embed_dim, f"{m.grid}x{m.grid}", m.image_size, len(names), shown])
    table("models", ["name", "backend", "K", "d", "grid", "px", "classes", "concepts"], rows)
