"""Packaging hook: the model cards in models/ (their source) ship inside the wheel as
workbench/store/cards/, and the dataset cards in corpora/ as workbench/data/cards/, so
`pip install .` gives a complete store catalog. Everything else is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithCards(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads models/ in place
        root = Path(__file__).resolve().parent
        for source, target in (("models", ("store", "cards")), ("corpora", ("data", "cards"))):
            folder = Path(self.build_lib).joinpath("workbench", *target)
            folder.mkdir(parents=True, exist_ok=True)
            for card in sorted(root.joinpath(source).glob("*.toml")):
                shutil.copy2(card, folder / card.name)


setup(cmdclass={"build_py": BuildPyWithCards})
