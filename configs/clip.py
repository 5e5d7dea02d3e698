"""CLIP (Radford et al. 2021): an image tower and a Transformer text tower trained with symmetric InfoNCE at a
learnable temperature; zero-shot classification with prompt templates never trained on, and retrieval.

Presets (`--config configs/clip.py:PRESET`; shared image defaults in configs/vision_base.py):
  cpu        the ~3,600 emoji of Noto Color Emoji with their Unicode names and CLDR keywords (`make emoji`,
             ssljax/data/emoji.py), 20% of the emoji concepts held out (every skin tone of one emoji on the same
             side); SmallCNN image tower at 32x32, a 2-block causal text tower over a WordPiece vocabulary trained
             on the captions. Zero-shot group (9) and subgroup (~100) top-1 on the held-out emoji.
             python launch/run.py --config configs/clip.py:cpu --workdir workdirs/clip_cpu
             2-core CPU: 4.2 min end to end (20 epochs at 259 images/s). Measured on the 701 held-out emoji:
             retrieval i2t R@1/5/10 0.274 / 0.475 / 0.542, t2i 0.302 / 0.468 / 0.546 (chance 0.001 / 0.007 /
             0.014); zero-shot group 0.240 (chance 0.111), subgroup 0.116 (chance 0.010); image tower linear
             probe on the groups 0.800, kNN 0.779 (random init 0.760, 0.723); the random-init towers at chance.
             The text tower never reads a group's words in a caption: in an earlier run flags scored 0.93 and
             most other groups near chance. A fresh run trains its own WordPiece vocabulary, whose ties break
             differently from process to process (huggingface/tokenizers#1794): earlier runs of this preset gave
             group 0.281 / 0.270, subgroup 0.131 / 0.137, i2t R@1 0.285 / 0.287.
  fashion    Fashion-MNIST with captions written from its labels by 8 templates; zero-shot with 6 others.
  tiny       a few steps on the emoji (`data.path` set by the test), for tests.
  coco       tfds coco_captions at 224, ViT-B/32 image tower, 12-block text tower of width 512, batch 4096: a pod
             slice (in-memory data: `data.max_train_examples` bounds what each host decodes).
A TFRecord dataset of your own: --config.data.name=tfrecord --config.data.path='train-*.tfrecord'
--config.data.eval_path='val-*.tfrecord' (features: 'image' JPEG bytes, 'caption' one or more strings).
"""

import os

import ml_collections
import vision_base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("cpu", "fashion", "tiny", "coco")


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cpu"
  if preset not in PRESETS:
    raise ValueError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
  c = vision_base.base("clip", {"fashion": "cpu", "coco": "imagenet"}.get(preset, preset))
  c.data.name = "emoji"
  c.data.path = os.path.join(ROOT, "data", "emoji")
  c.data.image_size = 32
  c.data.heldout_fraction = 0.2  # emoji: the share of base emoji (concepts) held out
  c.data.split_seed = 0  # emoji: which concepts are held out
  c.data.eval_path = ""  # tfrecord: the held-out files
  c.data.vocab_size = 2000  # WordPiece, trained on the training captions, saved in workdir/tokenizer
  c.data.lowercase = True
  c.data.max_caption_tokens = 24
  c.data.max_captions = 8  # captions kept per image

  c.model.encoder_kwargs = ml_collections.ConfigDict({"widths": (32, 64, 128)})
  c.model.readout = "pre_logits"

  c.clip = ml_collections.ConfigDict()
  c.clip.embed_dim = 128
  c.clip.text_width = 128
  c.clip.text_depth = 2
  c.clip.text_heads = 4
  c.clip.causal = True  # CLIP's text tower: the [SEP] token's state is the caption's feature
  c.clip.init_temperature = 0.07

  c.augment.crop_scale = (0.8, 1.0)
  c.augment.flip = False

  c.optim.name = "adamw"
  c.optim.learning_rate = 1e-3
  c.optim.lr_scaling = "none"
  c.optim.weight_decay = 0.1
  c.optim.b2 = 0.98
  c.optim.warmup_epochs = 2.0
  c.batch_size = 256
  # Held-out zero-shot peaks early while retrieval keeps rising (cpu preset, group / subgroup top-1, i2t R@1):
  # 8 epochs 0.267 / 0.130 / 0.181, 20 epochs 0.270 / 0.137 / 0.287, 60 epochs 0.184 / 0.083 / 0.361.
  c.epochs = 20
  c.checkpoint_every = 200
  c.log_every = 20

  c.evals.batch_size = 512
  c.evals.label_fractions = (1.0,)
  c.evals.knn_k = 20
  c.evals.finetune = False
  c.evals.baselines = ("random_init",)
  c.evals.retrieval_ks = (1, 5, 10)
  # Never a training caption's form: zero-shot reads class names through these only.
  c.evals.zero_shot_templates = (
    "an emoji of the category {}.",
    "a small icon showing {}.",
    "a picture from the group {}.",
    "a pictogram about {}.",
    "this symbol belongs to {}.",
  )

  if preset == "fashion":
    c.data.name = "fashion_mnist"
    c.data.path = "/usr/share/datasets/fashion-mnist"
    c.data.image_size = 28
    c.data.vocab_size = 400
    c.model.encoder_kwargs.widths = (16, 32, 64)
    c.augment.crop_scale = (0.5, 1.0)
    c.augment.flip = True
    c.epochs = 3
    c.optim.warmup_epochs = 0.2
    c.evals.knn_k = 200
    c.evals.zero_shot_templates = (
      "an item of clothing: a {}.",
      "a catalogue picture showing a {}.",
      "there is a {} in this image.",
      "a {}, photographed for a shop.",
      "a thumbnail of one {}.",
      "a worn {}.",
    )
  elif preset == "tiny":
    c.batch_size = 32
    c.total_steps = 6
    c.checkpoint_every = 2
    c.log_every = 1
    c.data.image_size = 16
    c.data.vocab_size = 300
    c.data.max_caption_tokens = 12
    c.data.max_train_examples = 512
    c.data.max_eval_examples = 256
    c.model.encoder_kwargs.widths = (8, 16)
    c.clip.embed_dim = 16
    c.clip.text_width = 16
    c.clip.text_depth = 1
    c.clip.text_heads = 2
    c.optim.warmup_epochs = 0.0
    c.evals.batch_size = 128
    c.evals.plots = False
  elif preset == "coco":
    c.data.name = "coco_captions"
    c.data.path = ""
    c.data.image_size = 224
    c.data.eval_split = "val"
    c.data.vocab_size = 32000
    c.data.max_caption_tokens = 64
    c.data.max_train_examples = 120_000
    c.data.max_eval_examples = 5000
    c.model.encoder = "vit"
    c.model.encoder_kwargs = ml_collections.ConfigDict({"size": "B", "patch_size": 32})
    c.model.dtype = "bfloat16"
    c.clip.embed_dim = 512
    c.clip.text_width = 512
    c.clip.text_depth = 12
    c.clip.text_heads = 8
    c.optim.learning_rate = 5e-4
    c.optim.weight_decay = 0.2
    c.batch_size = 4096
    c.epochs = 32
    c.evals.zero_shot_templates = ("a photo of a {}.",)
  return c
