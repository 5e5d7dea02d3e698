"""word2vec, ours against gensim 4.4.0, side by side on one corpus with the same hyperparameters.

  python benchmarks/word2vec_vs_gensim.py --corpus data/text/corpus.txt.xz [--epochs 1 5] [--modes skipgram cbow]

Each trainer runs in its own child process and reports its own peak RSS (VmHWM: getrusage's maxrss of a
child starts at its parent's peak, which inflated gensim's figure to this script's ~460 MiB before): gensim with
workers=2 reading the corpus as a Python iterable of lines (decompressed first, outside the timing), ours
through `launch/run.py` with the `cpu` preset. Both vector sets are scored by the same code (ssljax.evals.words).
Per setting it prints end-to-end wall time (vocabulary scan + training), effective words/s (words left after
subsampling per second of training, as gensim reports it), peak RSS, analogy / WS353 / SimLex, and last the
ratio ours/gensim in words/s. Ours has two peaks: the whole process (its evals included) and up to the last training
step; the memory ratio uses the latter, as gensim's child only trains.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

HYPER = dict(window=5, negative=5, vector_size=100, min_count=5, sample=1e-3)

GENSIM_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence
corpus, epochs, sg, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = Word2Vec(vector_size=100, window=5, negative=5, min_count=5, sample=1e-3, sg=sg, workers=2, seed=0)
model.build_vocab(LineSentence(corpus))
t1 = time.perf_counter()
effective, raw = model.train(LineSentence(corpus), total_examples=model.corpus_count, epochs=epochs)
t2 = time.perf_counter()
model.wv.save_word2vec_format(out, binary=True)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"wall_s": t2 - t0, "train_s": t2 - t1, "effective_words": effective,
                  "peak_rss_mib": int(hwm.split()[1]) / 1024}))
"""


def _run_child(cmd, log_path: str) -> None:
  """Runs `cmd` with its output in `log_path`."""
  with open(log_path, "w") as log:
    if subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True).returncode:
      raise SystemExit(f"{' '.join(cmd[:4])} failed; see {log_path}:\n" + open(log_path).read()[-2000:])


def run_gensim(corpus_txt: str, epochs: int, mode: str, workdir: str) -> dict:
  vectors = os.path.join(workdir, "gensim.bin")
  log = os.path.join(workdir, "log.txt")
  _run_child(
    [sys.executable, "-c", GENSIM_CHILD, corpus_txt, str(epochs), "1" if mode == "skipgram" else "0", vectors], log
  )
  out = json.loads(open(log).read().strip().splitlines()[-1])
  from gensim.models import KeyedVectors

  kv = KeyedVectors.load_word2vec_format(vectors, binary=True)
  out.update(_score(kv.vectors, kv.index_to_key))
  out["words_per_s"] = out["effective_words"] / out["train_s"]
  return out


def run_ours(corpus: str, epochs: int, mode: str, workdir: str) -> dict:
  cmd = [
    sys.executable,
    "launch/run.py",
    "--config",
    "configs/word2vec.py:cpu",
    "--workdir",
    workdir,
    f"--config.data.path={corpus}",
    f"--config.epochs={epochs}",
    f"--config.word2vec.mode={mode}",
    "--config.evals.plots=False",
    "--config.checkpoint_every=100000",
  ]
  _run_child(cmd, os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + ".log"))
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  results = json.load(open(os.path.join(workdir, "eval.json")))
  lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  kept = sum(line["kept_fraction"] for line in lines) / len(lines)
  # Process start to the last step: reading the corpus, vocabulary, compiling, training (evals excluded,
  # as gensim's wall time is build_vocab + train).
  return {
    "wall_s": summary["train_wall_s"],
    "words_per_s": summary["examples_per_sec"] * kept,
    "peak_rss_mib": summary["peak_rss_mib"],
    "train_peak_rss_mib": summary["train_peak_rss_mib"],
    "analogy": results["analogy/total"],
    "ws353": results["wordsim353/spearman"],
    "simlex": results["simlex999/spearman"],
  }


def _score(vectors, words) -> dict:
  from ssljax.evals import words as word_evals

  data = os.path.join(ROOT, "ssljax", "evals", "data")
  return {
    "analogy": word_evals.analogy_accuracy(vectors, words, f"{data}/questions-words.txt")["total"],
    "ws353": word_evals.similarity_spearman(vectors, words, f"{data}/wordsim353.tsv")["spearman"],
    "simlex": word_evals.similarity_spearman(vectors, words, f"{data}/simlex999.txt")["spearman"],
  }


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--corpus", default=os.path.join(ROOT, "data", "text", "corpus.txt.xz"))
  parser.add_argument("--epochs", type=int, nargs="+", default=[1, 5])
  parser.add_argument("--modes", nargs="+", default=["skipgram", "cbow"])
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="w2v-bench-")
  corpus_txt = os.path.join(tmp, "corpus.txt")  # gensim reads plain text; decompressing is not its cost
  with (lzma.open if args.corpus.endswith(".xz") else open)(args.corpus, "rb") as src, open(corpus_txt, "wb") as dst:
    while chunk := src.read(1 << 24):
      dst.write(chunk)
  rows = []
  for mode in args.modes:
    for epochs in args.epochs:
      for name, fn in (("gensim", run_gensim), ("ours", run_ours)):
        workdir = tempfile.mkdtemp(prefix=f"{name}-{mode}-{epochs}-", dir=tmp)
        r = fn(corpus_txt if name == "gensim" else args.corpus, epochs, mode, workdir)
        rows.append((mode, epochs, name, r))
        print(
          f"{mode:9s} {epochs} ep {name:6s}: wall {r['wall_s']:6.0f} s | {r['words_per_s'] / 1e3:6.0f}k "
          f"effective words/s | peak RSS {r['peak_rss_mib']:5.0f} MiB"
          + (f" ({r['train_peak_rss_mib']:.0f} to the last step)" if "train_peak_rss_mib" in r else "")
          + f" | analogy {r['analogy']:.3f} | "
          f"WS353 {r['ws353']:.3f} | SimLex {r['simlex']:.3f}",
          flush=True,
        )
  print("ratio ours/gensim, effective words/s:")
  for mode in args.modes:
    for epochs in args.epochs:
      by = {name: r for m, e, name, r in rows if m == mode and e == epochs}
      print(
        f"  {mode} {epochs} ep: {by['ours']['words_per_s'] / by['gensim']['words_per_s']:.2f}x "
        f"(analogy {by['ours']['analogy'] - by['gensim']['analogy']:+.3f}, "
        f"peak RSS while training {by['ours']['train_peak_rss_mib'] / by['gensim']['peak_rss_mib']:.2f}x)"
      )


if __name__ == "__main__":
  main()
