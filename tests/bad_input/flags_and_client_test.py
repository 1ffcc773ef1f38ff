"""Bad-input probes of the command lines (flags that do not apply, out-of-range values) and of the
REST client (responses that are not a predict answer). Each must give one clear line."""

from export import client
from tests import base
from tests.base import tf

TINY = (
  "--synthetic_items=300",
  "--synthetic_users=30",
  "--synthetic_interactions=2000",
  "--synthetic_dim=8",
)

# (module, flags, the message stderr must contain).
FLAG_PROBES = (
  (
    "trainers.describe_data",
    ("--split=new_items", "--split_time=12345"),
    "--split_time applies only to --split=global_time. Received: --split=new_items",
  ),
  (
    "trainers.describe_data",
    ("--dataset=movielens", "--synthetic_items=5"),
    "--synthetic_items applies only to --dataset=synthetic. Received: --dataset=movielens",
  ),
  (
    "trainers.describe_data",
    ("--split=new_items", "--cold_item_fraction=1.5"),
    "--cold_item_fraction must be in (0, 1). Received: --cold_item_fraction=1.5",
  ),
  (
    "trainers.experiment",
    ("--output_dir=/tmp/never", "--table_rows=100,200"),
    "--table_rows must be at least three different positive integers",
  ),
  (
    "trainers.train_ranker",
    ("--output_dir=/tmp/never", "--learning_rate=-1", *TINY),
    "--learning_rate must be positive. Received: --learning_rate=-1",
  ),
  (
    "trainers.train_rqvae",
    ("--output_dir=/tmp/never", "--learning_rate=nan", *TINY),
    "--learning_rate and --beta must be finite. Received: --learning_rate=nan",
  ),
  (
    "trainers.train_spm",
    ("--sids=x.npz", "--vocab_size=100", "--output=y.model", "--max_piece_length=0"),
    "--max_piece_length must be positive (or unset for L). Received: --max_piece_length=0",
  ),
)


class FlagProbesTest(base.TestCase):
  def test_every_flag_probe_fails_with_its_message(self):
    for module, args, message in FLAG_PROBES:
      with self.subTest(module=module, args=args):
        result = base.run_module(module, *args, timeout=300)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(message, result.stderr)
        self.assertNotIn("Traceback", result.stderr)


class RestResponseProbesTest(base.TestCase):
  def test_responses_that_are_not_a_predict_answer(self):
    rest = client.RestClient("http://127.0.0.1:1", model_name="m")
    for raw, message in (
      (b"<html>oops</html>", "not JSON"),
      (b"\xff\xfe\x00", "not JSON"),
      (b"", "not JSON"),
      (b"null", "no 'outputs' object"),
      (b"42", "no 'outputs' object"),
      (b'{"outputs": {"ctr": [[1.0], [2.0, 3.0]]}}', "output 'ctr' is a ragged array"),
      (b'{"outputs": {"ctr": 5}}', "output 'ctr' is not an array"),
    ):
      with self.subTest(raw=raw):
        with self.assertRaisesRegex(client.ServingError, message):
          rest._outputs(raw)
    self.assertEqual(rest._outputs(b'{"outputs": {"ctr": [0.5]}}')["ctr"].tolist(), [0.5])


if __name__ == "__main__":
  tf.test.main()
