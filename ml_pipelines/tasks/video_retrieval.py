"""Text-video retrieval with TMVM (models/tmvm.py); CLIP4Clip meanP is its K = 1, uniform-mask case.

Loss: `L = L_nce + variance_weight * L_div` with `L_nce` the symmetric cross-entropy of the batch's
text-to-video similarity matrix (CLIP4Clip's CrossEn both ways; the in-batch videos and captions
are the negatives) and `L_div` the prototype diversity term (`diversity`: "variance" or "overlap",
losses/video.py; [inferred] form, see there). Options: variance_weight (lambda, 1.0 [inferred]),
diversity.

Evaluation (`evaluate`): prototypes of every video of `data.eval_split` and embeddings of every
caption of `<eval_split>_text` through `env.predict`, the full caption x video similarity
`max_k <t, p_k>` on the host, and text-to-video / video-to-text R@1/5/10, MdR, MnR
(ml_pipelines/evaluators/video_retrieval.py).

Batch keys: `video` uint8 [B, T, H, W, 3], `frame_mask` [B, T], `text` [B, L], `text_mask` [B, L].
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from losses import video as vl
from ml_pipelines import tasks
from ml_pipelines.evaluators import video_retrieval
from ml_pipelines.tasks.base import Task

DIVERSITY = {"variance": vl.prototype_variance, "overlap": vl.prototype_overlap}


@tasks.register("video_retrieval")
class VideoRetrieval(Task):
  OPTIONS = frozenset({"variance_weight", "diversity"})

  def __init__(self, config):
    super().__init__(config)
    self.weight = float(config.task.get("variance_weight", 1.0))
    kind = config.task.get("diversity", "variance")
    if kind not in DIVERSITY:
      raise ValueError(f"task.diversity={kind!r}; use one of {sorted(DIVERSITY)}.")
    self.diversity = DIVERSITY[kind]

  def loss(self, model, batch, rng, extra, step):
    sim, attn = model(batch["video"], batch["frame_mask"], batch["text"], batch["text_mask"])
    nce = vl.symmetric_cross_entropy(sim)
    div = self.diversity(attn) if attn.shape[-1] > 1 else jnp.zeros(())
    loss = nce + self.weight * div
    return loss, {"metrics": {"nce": nce, "diversity": div, "scale": model.scale()}}

  @staticmethod
  def video_outputs(model, batch):
    protos, attn = model.prototypes(batch["video"], batch["frame_mask"])
    return {"prototypes": protos, "attention": attn}

  @staticmethod
  def text_outputs(model, batch):
    return {"text": model.encode_text(batch["text"], batch["text_mask"]),
            "video_index": batch["video_index"]}

  def similarity(self, env, state):
    """(caption x video similarity, caption -> video row, video outputs) of the eval split."""
    split = self.config.data.eval_split
    v = env.predict(state, self.video_outputs, split=split)
    t = env.predict(state, self.text_outputs, split=split + "_text")
    sim = np.max(np.einsum("qd,vkd->qvk", t["text"], v["prototypes"]), axis=-1)
    return sim, t["video_index"], v

  def evaluate(self, env, state):
    sim, video_index, _ = self.similarity(env, state)
    return video_retrieval.text_video_metrics(sim, video_index)
