"""Installs the project into a temp folder (`pip install --no-deps --target`) and runs the README's
"own TFRS model" example from outside the repository, so it works as a user would run it."""

import os
import re
import shutil
import subprocess
import sys

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

MARKER = "<!-- readme-example: own-tfrs-model -->"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build")


def readme_example() -> str:
  with open(os.path.join(base.ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read()
  match = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
  if not match:
    raise AssertionError(f"README.md has no python block after {MARKER}")
  return match.group(1)


class ReadmeExampleTest(base.TestCase):
  def test_example_runs_from_an_installed_copy(self):
    tmp = self.get_temp_dir()
    source = os.path.join(tmp, "source")  # A copy, so the build writes nothing into the repo.
    for name in ("features", "model", "trainers", "export"):
      shutil.copytree(
        os.path.join(base.ROOT, name),
        os.path.join(source, name),
        ignore=_IGNORE,
        dirs_exist_ok=True,
      )
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
      shutil.copy(os.path.join(base.ROOT, name), source)
    site = os.path.join(tmp, "site")
    install = subprocess.run(
      [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
      + ["--target", site, source],
      capture_output=True,
      text=True,
      timeout=300,
    )
    self.assertEqual(install.returncode, 0, install.stderr)
    for package in ("features", "model", "trainers", "export"):
      self.assertTrue(os.path.isfile(os.path.join(site, package, "__init__.py")), package)
    script = os.path.join(self.get_temp_dir(), "example.py")
    with open(script, "w") as f:
      f.write(readme_example())
    workdir = os.path.join(tmp, "work")  # Not the repo: the installed copy is imported.
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=site, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run(
      [sys.executable, script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    self.assertEqual(run.returncode, 0, run.stderr[-3000:])
    self.assertIn("scores:", run.stdout)
    probe = subprocess.run(
      [sys.executable, "-c", "import model.schemes as m; print(m.__file__)"],
      cwd=workdir,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
    )
    self.assertTrue(probe.stdout.strip().startswith(site), probe.stdout + probe.stderr)


if __name__ == "__main__":
  tf.test.main()
