"""Input pipelines, the trainer, evaluation and search engines."""
