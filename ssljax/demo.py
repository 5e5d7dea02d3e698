"""Try a trained model from the command line.

  python -m ssljax.demo fill --workdir workdirs/bert_cpu "I love to eat peanut [MASK] and jam."

`fill` prints, for each [MASK] of the text, the masked-LM's top predictions from the workdir's latest
checkpoint, tokenized with the WordPiece vocabulary saved beside it.
"""

from __future__ import annotations

import argparse
import os
import sys


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def fill(workdir: str, text: str, *, top: int = 5) -> list[list[tuple[str, float]]]:
  """Top `top` (token, probability) pairs for each [MASK] in `text`, in order."""
  import jax
  import jax.numpy as jnp

  from ssljax import runs, sharding
  from ssljax.data import DataError, wordpiece
  from ssljax.methods import bert

  config = runs.config_of(workdir)
  if config.method != "bert":
    raise DataError(f"{workdir} holds a {config.method} run; fill needs a bert run")
  tok = wordpiece.load(os.path.join(workdir, "tokenizer"))
  params = sharding.to_host(runs.load(workdir).params)
  rows = params["encoder"]["token_embed"]["embedding"].shape[0]
  if rows != tok.vocab_size:
    raise DataError(
      f"the tokenizer in {workdir}/tokenizer has {tok.vocab_size} tokens but the checkpoint's "
      f"embedding has {rows} rows: they do not belong together"
    )
  ids = [tok.cls_id] + tok.encode(text).tolist() + [tok.sep_id]
  masks = [i for i, t in enumerate(ids) if t == tok.mask_id]
  if not masks:
    raise DataError(f"no [MASK] in {text!r}")
  if len(ids) > config.data.max_len:
    raise DataError(
      f"the text is {len(ids)} tokens with [CLS] and [SEP], longer than the model's data.max_len={config.data.max_len}"
    )
  model = bert.build_model(config, rows)
  tokens = jnp.asarray([ids], jnp.int32)
  (logits, _), _ = model.apply(
    {"params": params},
    tokens,
    jnp.zeros_like(tokens),
    tokens != tok.pad_id,
    jnp.asarray([masks], jnp.int32),
    train=False,
  )
  probs = jax.nn.softmax(logits[0], axis=-1)
  best = jax.lax.top_k(probs, top)
  vocab = tok.vocab
  return [[(vocab[int(i)], float(p)) for p, i in zip(*row)] for row in zip(best[0].tolist(), best[1].tolist())]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m ssljax.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("fill", help="top predictions of a BERT run for each [MASK] in a text")
  p.add_argument("text")
  p.add_argument("--workdir", required=True)
  p.add_argument("--top", type=int, default=5)
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from ssljax.config import ConfigError
  from ssljax.data import DataError

  try:
    results = fill(args.workdir, args.text, top=args.top)
  except (DataError, ConfigError) as e:
    _fail(str(e))
  print(args.text)
  for k, options in enumerate(results):
    print(f"  [MASK] {k + 1}: " + ", ".join(f"{t} {p:.3f}" for t, p in options))


if __name__ == "__main__":
  main()
