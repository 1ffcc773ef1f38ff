"""Trains a SentencePiece model over the semantic IDs of impressed items, weighted by impressions.

Input. Each item's SID is written as one "sentence" of L private-use symbols (`sid_symbols`), with
no whitespace, weighted by the item's impression count (SentencePiece's TSV input,
`sentence<TAB>count`; identical SIDs are merged and their counts added). Items never impressed are
left out. Frequent code runs (the SIDs of popular items and popular prefixes) therefore dominate the
counts and become single pieces (memorisation), while rare items fall back to shorter pieces shared
with related items (generalisation): the paper's Fig. 4.

Options, and why:
- Every (level, code) symbol is in the vocabulary, so every SID tokenizes without `<unk>`, including
  codes never seen in training: each symbol is added to the corpus as a one-symbol sentence (weight
  in `symbol_weight`; `required_chars`, also set, alone does not add characters absent from the
  corpus in SentencePiece 0.2.3), with `character_coverage=1.0`; the budget must hold all K*L
  symbols plus `<unk>`. A one-symbol sentence cannot form a multi-symbol piece, so the learned
  pieces are unaffected. (`user_defined_symbols` would not do: SentencePiece cuts the input at every
  user-defined symbol, so no multi-symbol piece could ever form.)
- Pieces never mix levels out of order: each SID is its own sentence (no piece spans two items), and
  there is no whitespace, `split_by_unicode_script`/`split_by_number`/`split_by_whitespace` are off,
  `add_dummy_prefix` and whitespace cleanup are off and the normaliser is `identity`, so the text is
  exactly the symbols. Every piece is then a substring of some SID string, i.e. consecutive levels
  in order; `sid_spm.check_model_proto` verifies it for every piece after training.
- Model type: unigram (default, as in SentencePiece itself). Its Viterbi segmentation picks
  the most likely pieces, so a popular item gets one full-SID piece even when its prefixes are rare.
  SentencePiece 0.2.3's built-in unigram seeding (suffix array over bytes) finds no multi-character
  candidates in text made of 4-byte UTF-8 characters (measured: only the single symbols survive), so
  the seed pieces are computed here exactly as SentencePiece scores them, every contiguous code run
  of length >= 2 with weighted frequency >= 2, scored frequency * length, the top `max_seed_pieces`
  kept, and passed in `seed_sentencepieces_file`. BPE (greedy most frequent merges; needs no seeds)
  is available as `ModelType.BPE`.
- Maximum piece length: L (the whole SID) by default, so the most impressed items can be memorised
  as one token; a smaller `max_piece_length` caps memorisation.
- `hard_vocab_limit=False`: with few distinct SIDs there may be fewer useful pieces than the budget;
  the model is then smaller than `vocab_size` (use the layer's `num_rows`, not the budget). No
  BOS/EOS pieces; `<unk>` is id 0 and never produced.
"""

import collections
import dataclasses
import enum
import io
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from features import sid_spm, sid_symbols


class ModelType(enum.Enum):
  """SentencePiece model types usable over SIDs."""

  UNIGRAM = "unigram"
  BPE = "bpe"


@dataclasses.dataclass
class SpmTrainingConfig:
  """How to train the SID SentencePiece model.

  Attributes:
    vocab_size: int. Vocabulary budget = embedding-table rows; at least K*L + 1.
    model_type: ModelType. Defaults to UNIGRAM.
    max_piece_length: int or None. Longest piece, in symbols (levels). None means L.
    max_seed_pieces: int. Unigram only: seed pieces kept before EM pruning. Defaults to 1,000,000.
    num_threads: int. SentencePiece trainer threads. Defaults to 1.
  """

  vocab_size: int
  model_type: ModelType = ModelType.UNIGRAM
  max_piece_length: Optional[int] = None
  max_seed_pieces: int = 1_000_000
  num_threads: int = 1


def impression_counts(item_ids: Sequence[int], impressed_item_ids: Sequence[int]) -> np.ndarray:
  """Impressions per item: how often each of `item_ids` occurs in `impressed_item_ids`."""
  item_ids = np.asarray(item_ids, dtype=np.int64)
  impressed, counts = np.unique(np.asarray(impressed_item_ids, dtype=np.int64), return_counts=True)
  if not len(impressed):
    return np.zeros(len(item_ids), np.int64)
  pos = np.minimum(np.searchsorted(impressed, item_ids), len(impressed) - 1)
  return np.where(impressed[pos] == item_ids, counts[pos], 0).astype(np.int64)


def weighted_sid_strings(
  codes: np.ndarray, weights: np.ndarray, codebook_size: int
) -> List[Tuple[str, int]]:
  """Distinct SID strings of items with positive weight, with summed weights, heaviest first."""
  codes = np.asarray(codes)
  weights = np.asarray(weights)
  if codes.ndim != 2 or len(codes) != len(weights):
    raise ValueError(
      "`codes` must be [N, L] and `weights` [N]. "
      f"Received: codes {codes.shape}, weights {weights.shape}"
    )
  if np.any(weights < 0) or not np.all(np.isfinite(weights)):
    raise ValueError("`weights` (impressions) must be finite and non-negative.")
  keep = np.rint(weights).astype(np.int64) > 0
  totals: Dict[str, int] = collections.Counter()
  strings = sid_symbols.sid_strings(codes[keep], codebook_size)
  for text, weight in zip(strings, np.rint(weights[keep]).astype(np.int64).tolist()):
    totals[text] += weight
  return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def seed_pieces(
  sentences: Sequence[Tuple[str, int]], max_piece_length: int, max_pieces: int
) -> List[Tuple[str, int]]:
  """Unigram seeds: every contiguous run of 2..max_piece_length symbols with weighted frequency >=
  2.

  Scored frequency * length (as SentencePiece scores its own seeds); the top `max_pieces`, best
  first.
  """
  counts: Dict[str, int] = collections.Counter()
  for text, weight in sentences:
    for start in range(len(text) - 1):
      for end in range(start + 2, min(len(text), start + max_piece_length) + 1):
        counts[text[start:end]] += weight
  scored = [(piece, freq * len(piece)) for piece, freq in counts.items() if freq >= 2]
  scored.sort(key=lambda kv: (-kv[1], kv[0]))
  return scored[:max_pieces]


def train_sid_spm(
  codes: np.ndarray, weights: np.ndarray, codebook_size: int, config: SpmTrainingConfig
) -> bytes:
  """Trains a SentencePiece model over SIDs weighted by impressions.

  Args:
    codes: int[N, L]. Semantic IDs of the items.
    weights: number[N]. Impressions per item (rounded to integers; items with 0 are left out).
    codebook_size: int. K.
    config: SpmTrainingConfig.

  Returns:
    The serialized model proto; it passes `sid_spm.check_model_proto`.

  Raises:
    ValueError: on bad arguments, a budget below K*L + 1, or no impressed item.
  """
  codes = np.asarray(codes)
  num_levels = codes.shape[-1] if codes.ndim == 2 else 0
  sid_symbols.check_capacity(num_levels, codebook_size)
  min_vocab = num_levels * codebook_size + 1
  if config.vocab_size < min_vocab:
    raise ValueError(
      "`vocab_size` must hold every (level, code) symbol plus <unk>: at least "
      f"L*K + 1 = {min_vocab}. Received: vocab_size={config.vocab_size}"
    )
  max_piece_length = config.max_piece_length or num_levels
  if not 1 <= max_piece_length <= num_levels:
    raise ValueError(
      f"`max_piece_length` must lie in [1, {num_levels}]. "
      f"Received: max_piece_length={max_piece_length}"
    )
  model_type = ModelType(config.model_type)
  sentences = weighted_sid_strings(codes, weights, codebook_size)
  if not sentences:
    raise ValueError("No item has a positive impression count: nothing to train on.")
  with tempfile.TemporaryDirectory() as tmp:
    options = _trainer_options(tmp, sentences, num_levels, codebook_size, config, max_piece_length)
    if model_type is ModelType.UNIGRAM:
      seeds = seed_pieces(sentences, max_piece_length, config.max_seed_pieces)
      options["seed_sentencepieces_file"] = _write_tsv(os.path.join(tmp, "seeds.tsv"), seeds)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(model_writer=model, **options)
  proto = _strip_training_inputs(model.getvalue())
  sid_spm.check_model_proto(proto, num_levels, codebook_size)
  return proto


def _strip_training_inputs(proto: bytes) -> bytes:
  """Drops the temp-file paths and the required-symbol list from the recorded trainer spec.

  Inference never reads them; without them the model is smaller and byte-identical across runs.
  """
  model = sentencepiece_model_pb2.ModelProto.FromString(proto)
  del model.trainer_spec.input[:]
  model.trainer_spec.ClearField("seed_sentencepieces_file")
  model.trainer_spec.ClearField("required_chars")
  return model.SerializeToString()


def symbol_weight(total_chars: int) -> int:
  """Weight of the one-symbol sentence added for every (level, code) symbol.

  SentencePiece keeps a character only while `float(covered / total) < character_coverage`, a
  float32 test that drops characters whose share is below about 2^-24 even at coverage 1.0
  (measured: the rarest symbol vanished with ~10^7 weighted characters). A weight of
  `1 + total_chars // 2^22` keeps every share above 2^-23 and adds under 0.5% to the corpus for
  L*K = 16,384 symbols. `required_chars` alone does not add characters absent from the corpus.
  """
  return 1 + total_chars // 2**22


def _trainer_options(
  tmp: str,
  sentences: Sequence[Tuple[str, int]],
  num_levels: int,
  codebook_size: int,
  config: SpmTrainingConfig,
  max_piece_length: int,
) -> dict:
  symbols = sid_symbols.all_symbols(num_levels, codebook_size)
  weight = symbol_weight(sum(len(text) * count for text, count in sentences))
  symbol_sentences = [(char, weight) for char in symbols]
  return dict(
    input=_write_tsv(os.path.join(tmp, "sids.tsv"), list(sentences) + symbol_sentences),
    input_format="tsv",
    model_type=ModelType(config.model_type).value,
    vocab_size=config.vocab_size,
    hard_vocab_limit=False,
    character_coverage=1.0,
    required_chars=symbols,
    max_sentencepiece_length=max_piece_length,
    split_by_unicode_script=False,
    split_by_number=False,
    split_by_whitespace=False,
    split_digits=False,
    add_dummy_prefix=False,
    remove_extra_whitespaces=False,
    normalization_rule_name="identity",
    unk_id=0,
    bos_id=-1,
    eos_id=-1,
    pad_id=-1,
    num_threads=config.num_threads,
    minloglevel=2,
  )


def _write_tsv(path: str, rows: Sequence[Tuple[str, int]]) -> str:
  with open(path, "w", encoding="utf-8") as f:
    for text, value in rows:
      f.write(f"{text}\t{value}\n")
  return path


def tokens_per_item(model_proto: bytes, codes: np.ndarray, codebook_size: int) -> np.ndarray:
  """Pieces per item (int64[N]) under the model, computed with the SentencePiece library."""
  processor = spm.SentencePieceProcessor(model_proto=model_proto)
  encoded = processor.encode(sid_symbols.sid_strings(codes, codebook_size))
  return np.array([len(ids) for ids in encoded], dtype=np.int64)


def by_popularity_decile(
  values: np.ndarray, impressions: np.ndarray, num_buckets: int = 10
) -> List[float]:
  """Mean of `values` per popularity bucket, most popular first.

  Items are ranked by impressions (ties by position, so the result is deterministic) and cut into
  `num_buckets` equal-count buckets.
  """
  values = np.asarray(values, dtype=np.float64)
  order = np.argsort(-np.asarray(impressions), kind="stable")
  return [float(np.mean(values[part])) for part in np.array_split(order, num_buckets) if len(part)]
