import pytest

from cortex_cli.models import classnames
from cortex_cli.core.errors import CortexError


def test_imagenet_names_and_synonyms():
    labels = classnames.imagenet_classes()
    assert len(labels) == 1000 and [c.class_id for c in labels] == list(range(1000))
    by_id = {c.class_id: c for c in labels}
    assert (by_id[11].name, by_id[20].name, by_id[80].name, by_id[409].name) == (
        "goldfinch", "water ouzel", "black grouse", "analog clock")
    assert "dipper" in by_id[20].synonyms
    assert classnames.resolve("Dipper", labels).class_id == 20
    assert classnames.resolve("ANALOG_CLOCK", labels).class_id == 409
    assert classnames.resolve("80", labels).name == "black grouse"


def test_unknown_names_get_suggestions():
    labels = classnames.imagenet_classes()
    with pytest.raises(CortexError, match="did you mean 'goldfinch'"):
        classnames.resolve("goldfnch", labels)
    with pytest.raises(CortexError, match="`cortex models list`"):
        classnames.resolve("zzzzqqq", labels)
    with pytest.raises(CortexError, match="ids run from 0 to 999"):
        classnames.resolve("1000", labels)


def test_mini_and_numbered_labels():
    from cortex_cli.miniworld.world import CONCEPTS

    mini = classnames.load_labels("mini", 0)
    assert [c.name for c in mini] == [c.name for c in CONCEPTS] and len(mini) == 13
    assert [c.name for c in classnames.load_labels(None, 3)] == ["class 0", "class 1", "class 2"]


def test_label_files(tmp_path):
    good = tmp_path / "labels.tsv"
    good.write_text("# comment\n0\tcat, kitty\n1\tn0000001\tdog\n")
    labels = classnames.load_labels(str(good), 2)
    assert [(c.class_id, c.name, c.synonyms) for c in labels] == [(0, "cat", ("kitty",)), (1, "dog", ())]
    with pytest.raises(CortexError, match="list 2 classes but the model has 4"):
        classnames.load_labels(str(good), 4)
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\tcat\n")
    with pytest.raises(CortexError, match=r"bad.tsv:1: class id 'x'"):
        classnames.load_labels(str(bad), 1)
    with pytest.raises(CortexError, match="neither 'imagenet', 'mini' nor an existing file"):
        classnames.load_labels(str(tmp_path / "missing.tsv"), 1)
