import pytest
import torch

from cortex_cli.core import environment
from cortex_cli.core.errors import CortexError


def test_home_follows_the_environment(cortex_home):
    assert environment.cortex_home() == cortex_home and cortex_home.is_dir()
    assert environment.default_db_url() == f"sqlite:///{cortex_home / 'cortex.db'}"
    reports = environment.artifacts_dir("reports", "x")
    assert reports == cortex_home / "reports" / "x" and reports.is_dir()


def test_default_home_is_the_platform_user_dir(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv(environment.HOME_ENV)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "platform" / app))
    assert environment.cortex_home() == tmp_path / "platform" / "cortex"


def test_unwritable_home_is_an_actionable_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(environment.HOME_ENV, str(blocker / "home"))
    with pytest.raises(CortexError, match="set CORTEX_HOME to a writable directory"):
        environment.cortex_home()


def test_devices():
    assert environment.resolve_device("cpu") == torch.device("cpu")
    assert environment.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CortexError, match="unknown device 'tpu'"):
        environment.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CortexError, match="use --device cpu"):
            environment.resolve_device("cuda:0")
    else:
        with pytest.raises(CortexError, match="does not exist"):
            environment.resolve_device(f"cuda:{torch.cuda.device_count()}")
