# The README's commands. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/simclr.py:cpu
WORKDIR ?= workdirs/simclr_cpu
TEST_WORKERS ?= 2  # pytest-xdist workers: XLA compiles on one thread, so two processes keep two cores busy
FMNIST := /usr/share/datasets/fashion-mnist

CORPUS := data/text/corpus.txt.xz
RAW := data/text/raw/.complete

.PHONY: run test lint bench data corpus emoji speech venv clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Offline data from Debian packages: Fashion-MNIST's original IDX files; espeak-ng, whose voices speak CPC's audio
# (`make speech`); Noto Color Emoji, Unicode's emoji list and CLDR's keywords, from which CLIP's emoji pairs are
# drawn (data/emoji, a few seconds; Pillow's raqm shapes emoji sequences with the system's FriBiDi).
DEBIAN_PACKAGES := dataset-fashion-mnist espeak-ng fonts-noto-color-emoji unicode-data unicode-cldr-core libfribidi0
EMOJI := data/emoji/emoji.npz
SPEECH := data/speech/speakers.tsv

data: venv
	@test -f $(FMNIST)/train-images-idx3-ubyte.gz -a -x /usr/bin/espeak-ng -a -f /usr/share/unicode/emoji/emoji-test.txt \
	  -a -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf -a -d /usr/share/unicode/cldr/common/annotations \
	  -a -n "$$(ls /usr/lib/*/libfribidi.so.0 2>/dev/null)" || { \
	  command -v apt-get >/dev/null || { echo "error: no apt-get; install $(DEBIAN_PACKAGES) by hand, or pass --config.data.path=DIR" >&2; exit 2; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; }
	@test -f $(EMOJI) || $(PY) -m ssljax.data.emoji --out data/emoji
	@echo "Fashion-MNIST: $(FMNIST); emoji: data/emoji"

emoji: data

# CPC's offline speech: 100 espeak-ng speakers x 40 utterances, 5 hours at 16 kHz (about 1.5 minutes, 557 MB).
speech: $(SPEECH)
$(SPEECH): | data
	$(PY) -m ssljax.data.espeak --out data/speech

# The 17.6M-token English corpus of the word2vec cpu preset, rebuilt from Debian packages and gensim's test
# data by data/recipe (apt-get download; nothing is installed system-wide). Takes a while; once.
# Also the 20 cased sources before normalization (data/text/raw/*.txt.xz) that the language models read.
corpus: $(CORPUS) $(RAW)

$(CORPUS):
	test -f data/text/build/corpus.txt || bash data/recipe/make_corpus.sh $(CURDIR)/data/text/build
	xz -T2 -c data/text/build/corpus.txt > $@.tmp && mv $@.tmp $@

$(RAW):
	test -d data/text/build/raw || bash data/recipe/make_corpus.sh $(CURDIR)/data/text/build
	mkdir -p data/text/raw
	for f in data/text/build/raw/*.txt; do xz -T2 -c "$$f" > "data/text/raw/$$(basename "$$f").xz.tmp" && \
	  mv "data/text/raw/$$(basename "$$f").xz.tmp" "data/text/raw/$$(basename "$$f").xz"; done
	touch $@

run: venv data
	$(PY) launch/run.py --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

test: venv data lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 tests

# Formatting and lint, both configured in pyproject.toml: `$(VENV)/bin/ruff format .` fixes the first.
lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

bench: venv data
	$(PY) benchmarks/input_pipeline.py

clean:
	rm -rf workdirs
