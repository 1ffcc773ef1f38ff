"""The Trainer module file (`ranker_module.py`) in a folder of its own.

TFX packages every `.py` file of a module file's folder into the wheel the Trainer runs, and
hashes them into its cache key, so this folder holds only the module file (and this docstring).
"""

import os

MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ranker_module.py")

# The public modules (import them as `from trainers.tfx.trainer_module import <module>`).
__all__ = ["ranker_module"]
