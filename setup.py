"""Packaging hook: files whose source lives outside the package are copied into it at build, so
an installed wheel is complete on its own:

- the model cards in models/ as workbench/store/cards/, the dataset cards in corpora/ as
  workbench/data/cards/ (`pip install .` gives a complete store catalog);
- the built-in apps in apps/<id>/ (app.toml, knowledge/) as workbench/apps/builtin/<id>/;
- the Streamlit app (app.py, pages/*.py, .streamlit/config.toml) as workbench/app/, which
  `workbench app` starts (app.py finds its pages relative to itself, so the layout is the repo's).

Each target folder is emptied first, so a file removed from the repo leaves the wheel too. An
editable install reads them all in place. Everything else is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (folder in the package, [(file pattern in the repo, folder under the target)])
COPIED = (
    (("store", "cards"), [("models/*.toml", ".")]),
    (("data", "cards"), [("corpora/*.toml", ".")]),
    (("app",), [("app.py", "."), ("pages/*.py", "pages"), (".streamlit/config.toml", ".streamlit")]),
    (("apps", "builtin"), [("apps/*/app.toml", "{app}"), ("apps/*/knowledge/*", "{app}/knowledge")]),
)


class BuildPyWithCards(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads models/, corpora/ and the app in place
        for target, patterns in COPIED:
            folder = Path(self.build_lib).joinpath("workbench", *target)
            shutil.rmtree(folder, ignore_errors=True)
            for pattern, under in patterns:
                for source in sorted(ROOT.glob(pattern)):
                    app = source.relative_to(ROOT).parts[1] if pattern.startswith("apps/") else ""
                    dest = folder / under.format(app=app)  # built-in apps keep apps/<id>/ as <id>/
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, dest / source.name)


setup(cmdclass={"build_py": BuildPyWithCards})
