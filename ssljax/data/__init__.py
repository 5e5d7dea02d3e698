"""Data sources: images (tf.data, tfds or IDX files) and text corpora (word ids in memory)."""


class DataError(ValueError):
  """A dataset that cannot be read; the message names it and says how to get it."""
