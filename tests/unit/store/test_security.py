"""Security defaults: loopback only, no usage statistics, no remote code, no pickles, no reading
outside the folder the user chose."""
import shutil
from pathlib import Path

import pytest
import tomllib

from workbench.errors import InvalidInputError, UnsupportedModelError
from workbench.store import Store
from workbench.testing import ROOT


def test_server_binds_loopback_and_sends_no_statistics():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False


def test_no_code_path_enables_remote_code():
    for path in (ROOT / "workbench").rglob("*.py"):
        text = path.read_text()
        assert "trust_remote_code=True" not in text, path


def test_symlink_out_of_the_chosen_folder_is_refused(isolated_home, tiny_model_dirs, tmp_path):
    folder = tmp_path / "sneaky"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    (folder / "tokenizer_config.json").unlink()
    (folder / "tokenizer_config.json").symlink_to(secret)
    with pytest.raises(UnsupportedModelError, match="outside the folder"):
        Store(isolated_home).add("sneaky", local_dir=folder)
    assert not any(Path(isolated_home).rglob("*secret*"))


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "UPPER", "", "x" * 80])
def test_custom_ids_cannot_name_paths(isolated_home, tiny_model_dirs, bad_id):
    with pytest.raises(InvalidInputError, match="not a valid id"):
        Store(isolated_home).add(bad_id, local_dir=tiny_model_dirs["gpt2"])
    assert list((Path(isolated_home) / "cards").iterdir()) == []


def test_gguf_source_must_be_a_gguf_file(isolated_home, tmp_path):
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0")
    with pytest.raises(UnsupportedModelError):
        Store(isolated_home).add("notgguf", gguf=other)
