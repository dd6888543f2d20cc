"""`cortex concepts add|list|remove`: named concepts beyond single classes."""

from __future__ import annotations

import typer

from .app import app, sub_command, workspace
from .options import AsJson, Model
from .render import console, print_json, table

concepts_app = typer.Typer(help="Name concepts beyond single classes: a union of classes (an attribute, a scene) or a prompt.",
                           no_args_is_help=True)
app.add_typer(concepts_app, name="concepts")


@sub_command(concepts_app, "add")
def concepts_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The concept's name, e.g. red; it may not be a class's name."),
    classes: str = typer.Option(None, "--classes", help="Its member classes: comma-separated class ids or names, 'goldfinch,black grouse,11', or @file.txt."),
    prompt: str = typer.Option(None, "--prompt", help="Text-conditional models (janus): sample the concept's images from this prompt."),
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """Name a concept; its name then works wherever a class name does (index, top-tokens, explain, edit, optimize, atlas, eval).

    Resolution order: a number is a class id, then class names and synonyms, then concept names.
    Example: cortex concepts add red --classes 'red-capped bird,red mushroom,red sailboat,house'
    Example: cortex --db ... concepts add "female doctor" --model janus-pro --prompt "a photo of a female doctor"
    """
    concept = workspace(ctx).add_concept(name, classes=classes, prompt=prompt, model=model)
    if as_json:
        print_json(concept)
        return
    what = f"prompt {concept.prompt!r} (class {concept.class_ids[0]})" if concept.kind == "prompt" else \
        ", ".join(c.name for c in concept.members)
    console.print(f"{concept.model} / concept {concept.name!r}: {what}", highlight=False, soft_wrap=True)
    console.print(f"next: cortex index --class '{concept.name}' --images 20", highlight=False, soft_wrap=True)


@sub_command(concepts_app, "list")
def concepts_list(ctx: typer.Context, model: Model = None, as_json: AsJson = False) -> None:
    """List the model's concepts and their member classes."""
    found = workspace(ctx).concepts(model=model)
    if as_json:
        print_json(found)
        return
    rows = [[c.name, c.kind, len(c.members), c.prompt if c.kind == "prompt" else ", ".join(m.name for m in c.members)] for c in found]
    table("concepts", ["name", "kind", "classes", "members or prompt"], rows)


@sub_command(concepts_app, "remove")
def concepts_remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The concept to forget."),
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """Forget a concept (its member classes stay; a prompt concept's own class goes with it, with its images and index rows)."""
    removed = workspace(ctx).remove_concept(name, model=model)
    if as_json:
        print_json(removed)
    else:
        console.print(f"removed concept {removed.name!r} of {removed.model}", highlight=False, soft_wrap=True)
