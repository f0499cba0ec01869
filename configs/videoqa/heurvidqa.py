"""HeurVidQA (Yu et al., arXiv 2410.09380): `heurvidqa.py:<dataset>[,inject]` and the prompter
`heurvidqa.py:prompter`.

    python -m ml_pipelines.train --config=configs/videoqa/heurvidqa.py:prompter \
        --workdir=/tmp/prompter
    python -m ml_pipelines.train --config=configs/videoqa/heurvidqa.py:moving_shapes \
        --workdir=/tmp/heurvidqa --config.init_from.path=/tmp/prompter

`inject`: `both` (default), `input`, `loss` or `none` (ALPRO's classifier). The QA model, data and
recipe are the classifier's (`classifier.py:<dataset>`); HeurVidQA adds a frozen prompter
(`optimizer.freeze`), its weights from `init_from` (only the `prompter/` parameters are read), and
the entity / action prompts. The paper's body could not be read: the injection, k = 5 and the
loss weight 1 are [inferred] (models/heurvidqa.py).

- `moving_shapes`: the prompter is ALPRO's `Prompter` (a tiny TimeSformer and text encoder, 64-d
  projections where ALPRO has 256) pretrained by `heurvidqa.py:prompter`: video-caption contrastive training on
  `moving_shapes_retrieval` videos of another seed than the QA videos. Entities are the 15
  colour-shape names, actions the 5 motions, in the captions' own words; the templates are the
  caption grammar with the other slot filled in every way ("a {} moves left", ..., for entities;
  "a red circle {}", ..., for actions), so the template average marginalises the other slot.
- `msrvtt_qa`, `msvd_qa`, `activitynet_qa`, `nextqa` (the datasets of `classifier.py`, its
  classification QA only): the prompter is CLIP ViT-B/32 as a `tmvm` mean-pooled (CLIP4Clip meanP)
  dual encoder, loaded zero-shot from an open_clip / OpenAI file
  (`--config.init_from.path=ViT-B-32.pt`, converter `prompter_open_clip`); entities and actions
  are read from `data/<dataset>/{entities,actions}.txt` (one per line, e.g. the nouns and the -ing
  verbs of the training answers and questions); entity templates are ALPRO's 12 video templates
  (salesforce/ALPRO `run_pretrain_sparse.py`, `get_video_prompt_templates`), action templates
  [inferred] the same frames with "someone {}". The QA towers' own pretrained weights would need a
  second `init_from` source, which the trainer does not have: they start as `classifier.py`'s
  would without its `init_from`.
"""
import ml_collections

from configs.video import common as video_common
from configs.video import tmvm
from configs.videoqa import classifier
from ml_pipelines.data import moving_shapes

REAL = ("msrvtt_qa", "msvd_qa", "activitynet_qa", "nextqa")
INJECT = ("both", "input", "loss", "none")
FREEZE = r"^prompter/"

# ALPRO's prompter for moving_shapes: a TimeSformer over the whole clip (it sees motion, which the
# classifier's per-frame tokens do not order) and a text-only BERT-style encoder.
TINY_PROMPTER = dict(
    name="alpro_prompter", embed_dim=64,
    vision=dict(name="timesformer_b16", embed_dim=96, depth=2, num_heads=4, patch_size=8,
                img_size=32, num_frames=8, drop_path=0.0),
    text=dict(video_common.TINY_TEXT, hidden_size=96, num_heads=4))

MS_ENTITIES = tuple(f"{c} {s}" for c in moving_shapes.COLOURS for s in moving_shapes.SHAPES)
MS_ACTIONS = tuple("stays still" if m == "static" else f"moves {m}" for m in moving_shapes.MOTIONS)
ALPRO_TEMPLATES = tuple(f"A {kind} of {det} {{}}." for kind in ("footage", "video", "portrait",
                                                                 "video footage")
                        for det in ("a", "the", "one"))
ACTION_TEMPLATES = tuple(f"A {kind} of someone {{}}." for kind in ("footage", "video", "portrait",
                                                                    "video footage"))


def heuristics(dataset: str, inject: str) -> dict:
  if dataset == "moving_shapes":
    return dict(inject=inject, weight=1.0, top_k=5, ignore_below=0.2, entities=MS_ENTITIES,
                actions=MS_ACTIONS, tokenizer="moving_shapes", prompt_words=8,
                entity_templates=tuple(f"a {{}} {a}" for a in MS_ACTIONS),
                action_templates=tuple(f"a {e} {{}}" for e in MS_ENTITIES))
  return dict(inject=inject, weight=1.0, top_k=5, ignore_below=0.2,
              entities=f"data/{dataset}/entities.txt", actions=f"data/{dataset}/actions.txt",
              tokenizer="clip", prompt_words=24, entity_templates=ALPRO_TEMPLATES,
              action_templates=ACTION_TEMPLATES)


def prompter_config():
  """ALPRO's prompter pretraining on moving_shapes captions (video-text contrastive)."""
  c = tmvm.get_config("moving_shapes,meanp")
  c.model = ml_collections.ConfigDict(TINY_PROMPTER)
  c.data.seed = 1  # other videos than the QA runs' (seed 0)
  c.task.variance_weight = 0.0
  return c


def get_config(arg=None):
  parts = (arg or "moving_shapes").split(",")
  if parts[0] == "prompter":
    return prompter_config()
  dataset, inject = parts[0], (parts[1] if len(parts) > 1 else "both")
  if dataset != "moving_shapes" and dataset not in REAL:
    raise ValueError(f"Unknown HeurVidQA dataset {dataset!r}; known: moving_shapes, {REAL}.")
  if inject not in INJECT:
    raise ValueError(f"Unknown heuristics injection {inject!r}; use one of {INJECT}.")
  c = classifier.get_config(dataset)
  if c.task.name != "videoqa_classification":
    raise ValueError(f"HeurVidQA extends classification QA; classifier.py:{dataset} trains "
                     f"{c.task.name!r}.")
  if dataset == "moving_shapes":
    prompter, converter = TINY_PROMPTER, "prompter_ours"
  else:
    prompter, converter = tmvm.get_config("msrvtt,meanp").model.to_dict(), "prompter_open_clip"
  c.model = ml_collections.ConfigDict(dict(c.model.to_dict(), name="heurvidqa",
                                           prompter=prompter))
  c.task = ml_collections.ConfigDict(dict(name="heurvidqa",
                                          heuristics=heuristics(dataset, inject)))
  c.optimizer.freeze = FREEZE
  c.init_from = ml_collections.ConfigDict(dict(path="", converter=converter,
                                               skip=r"^(?!prompter/)"))
  return c
