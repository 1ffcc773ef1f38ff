"""The order in which an interleaved benchmark runs its configurations (no flags, so it can be
tested).

`benchmarks.ranker_throughput` times every scheme once per repeat. A fixed order puts one scheme
last in every repeat, after all the others have filled the caches and the allocator, and on a
shared machine its figure then carries that position's bias in every repeat. Rotating the order by
one each repeat gives every configuration each position equally often when the repeats are a
multiple of the configurations.

>>> [rotated(["hash", "spm", "hybrid"], repeat) for repeat in range(3)]
[['hash', 'spm', 'hybrid'], ['spm', 'hybrid', 'hash'], ['hybrid', 'hash', 'spm']]
>>> rotated(["hash", "spm", "hybrid"], 3)
['hash', 'spm', 'hybrid']
"""

from typing import List, Sequence


def rotated(names: Sequence[str], repeat: int) -> List[str]:
  """`names` rotated left by `repeat` places (modulo their count); [] for no names."""
  names = list(names)
  if not names:
    return []
  shift = repeat % len(names)
  return names[shift:] + names[:shift]
