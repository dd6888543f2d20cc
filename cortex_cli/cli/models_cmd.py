"""`cortex models add|list`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from .. import model_registry
from .app import app, state, sub_command
from .render import console, print_json, table

models_app = typer.Typer(help="Register and list VQ generators (the bundled `mini` is always there).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@sub_command(models_app, "add")
def models_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Short name to pass as --model later, e.g. cin."),
    path: Path = typer.Argument(None, help="janus: a local snapshot directory of the weights (config.json, *.safetensors, tokenizer)."),
    backend: str = typer.Option("taming", "--backend", help="Which backend loads it: taming (default), janus, or one another package registers."),
    config: Path = typer.Option(None, "--config", help="taming: config yaml (model.target Net2NetTransformer)."),
    ckpt: Path = typer.Option(None, "--ckpt", help="taming: checkpoint, last.ckpt (Lightning), a state dict, or .safetensors."),
    labels: str = typer.Option(None, "--labels", help="Class names: 'imagenet', 'mini' or a TSV file 'id<TAB>name, synonym...'; janus prompts with them."),
    as_json: bool = typer.Option(False, "--json", help="Print the registered model as JSON."),
) -> None:
    """Register a model, loading it strictly first.

    taming (class-conditional VQGAN + GPT): cortex models add cin --config 2021-04-03T19-39-50_cin_transformer/configs/2021-04-03T19-39-50-project.yaml
    --ckpt 2021-04-03T19-39-50_cin_transformer/checkpoints/last.ckpt --labels imagenet

    janus (DeepSeek Janus-Pro, text-conditional; each class name becomes the prompt "a photo of a NAME"; needs
    pip install "cortex-cli[janus]"): cortex models add janus-pro --backend janus ./Janus-Pro-1B --labels imagenet
    """
    info = model_registry.add_model(state(ctx).store(), name, config, ckpt, labels, backend=backend, path=path)
    if as_json:
        print_json(info)
    else:
        console.print(f"registered [bold]{info.name}[/] ({info.backend}): K={info.n_embed} d={info.embed_dim} grid {info.grid}x{info.grid}, "
                      f"{info.image_size}px, {info.n_classes} classes")


@sub_command(models_app, "list")
def models_list(
    ctx: typer.Context,
    classes: bool = typer.Option(False, "--classes", help="Also list every class (id, name, synonyms)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List registered models and their concepts (classes)."""
    store = state(ctx).store()
    models = model_registry.list_models(store)
    payload = [
        {**dataclasses.asdict(m), "classes": [dataclasses.asdict(c) for c in model_registry.classes(store, m)]}
        for m in models
    ]
    if as_json:
        print_json(payload)
        return
    rows = []
    for m, p in zip(models, payload):
        names = [c["name"] for c in p["classes"]]
        shown = ", ".join(names if classes or len(names) <= 16 else names[:8] + ["..."] + names[-2:])
        rows.append([m.name, m.backend, m.n_embed, m.embed_dim, f"{m.grid}x{m.grid}", m.image_size, len(names), shown])
    table("models", ["name", "backend", "K", "d", "grid", "px", "classes", "concepts"], rows)
