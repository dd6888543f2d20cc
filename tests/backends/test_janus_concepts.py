"""Prompt concepts and `cortex audit` end to end on the tiny random-weight Janus (tests/janus_helpers.py).

Two group prompts and a neutral prompt become concepts (each its own class); an extractor that knows
them is trained; the groups are indexed; the neutral prompt's test images are audited. The weights are
random, so only the plumbing is asserted: counts, shares and intervals that fit together, stored.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from cortex_cli import CortexError, Workspace  # noqa: E402
from janus_helpers import build_tiny_janus  # noqa: E402

GROUPS = {"female doctor": "a photo of a female doctor", "male doctor": "a photo of a male doctor"}
NEUTRAL = ("doctor", "a photo of a doctor")


def test_prompt_concepts_and_an_audit_run_end_to_end_on_janus(tmp_path):
    snapshot = build_tiny_janus(tmp_path / "tiny-janus")
    labels = tmp_path / "labels.tsv"
    labels.write_text("0\tgoldfinch\n1\twater ouzel\n")
    with Workspace(home=tmp_path / "home", device="cpu") as ws:
        ws.add_model("tj", snapshot, backend="janus", labels=str(labels))
        for name, prompt in [*GROUPS.items(), NEUTRAL]:
            made = ws.add_concept(name, prompt=prompt, model="tj")
            assert made.kind == "prompt" and [m.name for m in made.members] == [prompt]
        ws.train_extractor("ce", model="tj", width=8, fc_width=16, epochs=1, batch_size=2, train_per_class=2, val_per_class=1,
                           test_per_class=1)
        ws.index(list(GROUPS), images=3, model="tj", samples=2, top_n=4)  # a prompt concept is its own class's logit
        with pytest.raises(CortexError, match="is the audited concept 'doctor' itself"):
            ws.audit(NEUTRAL[0], ["female doctor", NEUTRAL[1]], model="tj")  # the prompt's class is the concept itself
        ws.generate(NEUTRAL[1], 5, split="test", model="tj")  # seed 0 exists: the extractor's test image
        result = ws.audit(NEUTRAL[0], list(GROUPS), model="tj", k=8, bootstrap=100, out=tmp_path / "out")
        again = ws.audit(NEUTRAL[0], list(GROUPS), model="tj", k=8, bootstrap=100, out=tmp_path / "out")
    assert (result.neutral, result.images, result.excluded, [g.name for g in result.groups]) == ("doctor", 5, 0, list(GROUPS))
    assert all(g.t_images == 3 and g.t_split == "train" and g.extractor == "ce" for g in result.groups)
    counts = [img.counts for img in result.per_image]
    assert len(counts) == 5 and all(0 <= c <= 16 for pair in counts for c in pair)  # a 4x4 grid
    leaning = [sum(a > b for a, b in counts) / 5, sum(b > a for a, b in counts) / 5]
    assert [g.share for g in result.groups] == pytest.approx(leaning)
    assert -1 <= result.cliff_delta <= 1 and result.judges == {} and any("no judge" in n for n in result.notices)
    assert set(result.groups[0].tokens).isdisjoint(result.groups[1].tokens)
    assert again.to_dict() == result.to_dict() and again.evaluation_id > result.evaluation_id
    assert (tmp_path / "out" / "audit_doctor__female-doctor__male-doctor.png").is_file()
