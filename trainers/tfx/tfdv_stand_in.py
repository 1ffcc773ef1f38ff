"""A stand-in for `tensorflow_data_validation`, so TFX's Trainer imports without TFDV.

`tfx.components.trainer.executor` imports `tfx.components.statistics_gen.stats_artifact_utils`,
which runs `import tensorflow_data_validation as tfdv` at module level and evaluates the annotation
`-> tfdv.DatasetListView`. TFDV is only *used* when a Trainer gets a `statistics` input, which no
component here wires. No TFDV release matches TFX 1.21 on this platform (1.16.1 fails to import
against tfx-bsl 1.21: "cannot import name 'sql_util' from 'tfx_bsl.arrow'"), so `install()` puts
this module in its place, and only when no real TFDV can be found. Any real use raises ImportError.
"""

import importlib.util
import sys
import types

MODULE_NAME = "tensorflow_data_validation"
MARKER = "__semantic_ids_stand_in__"


def _missing(*args, **kwargs):
  raise ImportError(
    f"{MODULE_NAME} is not installed (no TFDV release matches TFX 1.21 here); this environment "
    "runs no StatisticsGen, SchemaGen, ExampleValidator or Trainer `statistics` input."
  )


class DatasetListView:
  """The one name TFX evaluates at import time (a return annotation); unusable."""

  def __init__(self, *args, **kwargs):
    _missing()


def _getattr(name: str):
  if name.startswith("__"):  # `getattr(module, "__file__", None)` and the like must keep working
    raise AttributeError(name)
  _missing()


def install() -> bool:
  """Registers the stand-in unless a real TFDV is importable; returns True when it did."""
  if MODULE_NAME in sys.modules or importlib.util.find_spec(MODULE_NAME) is not None:
    return False
  module = types.ModuleType(MODULE_NAME, "Stand-in: TFDV is not installed in this environment.")
  module.DatasetListView = DatasetListView
  module.__getattr__ = _getattr
  setattr(module, MARKER, True)
  sys.modules[MODULE_NAME] = module
  return True


def installed() -> bool:
  """True when the stand-in (not a real TFDV) is what `import tensorflow_data_validation` gives."""
  return getattr(sys.modules.get(MODULE_NAME), MARKER, False)
