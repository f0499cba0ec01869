"""HeurVidQA (Yu et al., arXiv 2410.09380): classification video QA guided by the entity and action
heuristics of a frozen prompter (models/heurvidqa.py says what is the paper's and what is
[inferred]).

Loss: ALPRO's answer cross-entropy (`videoqa_classification`, reused as is) plus, when the
heuristics are injected through the loss,
  `weight * sum_k KL(h^k || softmax(predicted^k))`, k over the kinds with prompts
(losses/heurvidqa.py; clips whose best heuristic is below `ignore_below` are left out).
Evaluation: as `videoqa_classification` (accuracy overall and per question type), with the
heuristics injected into the input as in training.

`task.heuristics` (every key [inferred] but ALPRO's templates and threshold):
- inject: `input` (the top-k prompts become question tokens), `loss` (the heuristic-matching
  loss), `both`, or `none` (ALPRO's classifier: no prompter in the forward pass);
- weight (1.0) of the loss; top_k (5) prompts per kind for the input; ignore_below (0.2, ALPRO's
  `ignore_threshold`);
- entities / actions: the words (a tuple, or a text file with one per line, as ALPRO's
  `entity_file_path`); an empty tuple leaves that kind out (the entity-only / action-only
  ablations);
- entity_templates / action_templates: format strings with one `{}` (ALPRO's 12 video templates,
  "A video of a {}.", ...); each word is written into every template and the prompter's text
  features averaged over the templates;
- tokenizer: how the *prompter's* text tower reads the prompts, `moving_shapes` (its fixed word
  vocabulary) or `clip` (CLIP's BPE); prompt_words: the prompt length in tokens.

The prompts are tokenized once on the host (`constants`: `batch["prompts"]`, {kind: {ids, mask}}
of shape [templates, words, prompt_words]); their features are recomputed from the frozen prompter
in every step. The prompter must be frozen (`optimizer.freeze=r"^prompter/"`): the run stops at the
start otherwise, as it would also decay and move it.
"""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from losses import heurvidqa as hl
from ml_pipelines import tasks
from ml_pipelines.data import moving_shapes
from ml_pipelines.data import video as video_lib
from ml_pipelines.registry import unknown_options
from ml_pipelines.tasks.videoqa import VideoQAClassification, _inputs
from ml_pipelines.trainer import partition
from ml_pipelines.trainer.init_from import flat_paths
from models.heurvidqa import KINDS

INJECT = ("input", "loss", "both", "none")
DEFAULTS = dict(inject="both", weight=1.0, top_k=5, ignore_below=0.2, entities=(), actions=(),
                entity_templates=("{}",), action_templates=("{}",), tokenizer="moving_shapes",
                prompt_words=8)
PROMPTER = "prompter/"


def read_words(words) -> tuple[str, ...]:
  """A tuple of words as given, or the non-empty lines of a text file."""
  if isinstance(words, str):
    if not os.path.exists(words):
      raise FileNotFoundError(f"HeurVidQA word file {words!r} does not exist: write one entity / "
                              f"action per line, or give the words as a tuple.")
    with open(words) as f:
      return tuple(line.strip() for line in f if line.strip())
  return tuple(words)


def tokenizer(kind: str, length: int):
  """texts -> (ids [n, length] int32, mask [n, length] bool)."""
  if kind == "moving_shapes":
    return lambda texts: moving_shapes.tokenize(texts, length)
  if kind == "clip":
    return video_lib.tokenizer("clip", length)
  raise ValueError(f"task.heuristics.tokenizer={kind!r}; use 'moving_shapes' or 'clip'.")


def prompt_tokens(words, templates, tokenize) -> dict[str, np.ndarray]:
  """{ids, mask} [templates, words, length]: template t filled with word e at [t, e]."""
  ids, mask = tokenize([t.format(w) for t in templates for w in words])
  shape = (len(templates), len(words), ids.shape[-1])
  return {"ids": ids.reshape(shape).astype(np.int32), "mask": mask.reshape(shape)}


@tasks.register("heurvidqa")
class HeurVidQA(VideoQAClassification):
  OPTIONS = frozenset({"heuristics"})

  def __init__(self, config):
    super().__init__(config)
    h = dict(config.task.get("heuristics", {}))
    unknown_options(h, DEFAULTS, "task.heuristics")
    h = {**DEFAULTS, **h}
    if h["inject"] not in INJECT:
      raise ValueError(f"task.heuristics.inject={h['inject']!r}; use one of {INJECT}.")
    self.inject = h["inject"]
    self.weight, self.top_k = float(h["weight"]), int(h["top_k"])
    self.ignore_below = float(h["ignore_below"])
    self.words = {"entity": read_words(h["entities"]), "action": read_words(h["actions"])}
    self.templates = {"entity": tuple(h["entity_templates"]),
                      "action": tuple(h["action_templates"])}
    self.kinds = tuple(k for k in KINDS if self.words[k]) if self.inject != "none" else ()
    if self.inject != "none" and not self.kinds:
      raise ValueError(f"task.heuristics.inject={self.inject!r} needs entities or actions.")
    self.tokenize = tokenizer(h["tokenizer"], int(h["prompt_words"]))

  def constants(self, env):
    if not self.kinds:
      return None
    return {"prompts": {k: prompt_tokens(self.words[k], self.templates[k], self.tokenize)
                        for k in self.kinds}}

  def init_extra(self, env, rng, params):
    opt = (self.stage.config if self.stage is not None else self.config).optimizer
    mask = partition.trainable_mask(params, opt.get("trainable"), opt.get("freeze"))
    trained = [p for p, m in flat_paths(mask).items() if m and p.startswith(PROMPTER)]
    if trained:
      raise ValueError(f"HeurVidQA's prompter must stay frozen, but {len(trained)} of its "
                       f"parameters are trainable (e.g. {trained[0]}): set "
                       f"optimizer.freeze=r'^prompter/'.")
    return super().init_extra(env, rng, params)

  def forward(self, model, batch):
    return model(*_inputs(batch), batch.get("prompts", {}),
                 inject_input=self.inject in ("input", "both"), top_k=self.top_k)

  def loss(self, model, batch, rng, extra, step):
    out = self.forward(model, batch)
    loss, aux = super().loss(lambda *_: out["logits"], batch, rng, extra, step)
    if self.inject in ("loss", "both"):
      terms = {k: hl.heuristic_kl(out[f"h_{k}"], out[f"predicted_{k}"], self.ignore_below)
               for k in self.kinds}
      loss = loss + self.weight * sum(terms.values())
      aux["metrics"].update({f"heuristic_{k}": v for k, v in terms.items()})
    return loss, aux

  def predictions(self, model, batch):
    return {"prediction": jnp.argmax(self.forward(model, batch)["logits"], -1),
            "label": batch["label"]}
