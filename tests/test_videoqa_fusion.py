"""ALPRO's fusion against its own code (fixture written by
tests/fixtures/videoqa/make_fusion_fixture.py from salesforce/ALPRO): BERT fusion layers over the
concatenated [text; video] tokens, the QA classifier's logits on the fused [CLS], and the
TimeSformer tokens' temporal mean; the converter loads ALPRO's text encoder keys."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models import convert
from models.videoqa import QAHead, temporal_mean_tokens

FIX = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "videoqa",
                           "alpro_fusion_tiny.npz"))
TINY = dict(vocab_size=40, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=24,
            max_position=12, fusion_layer=1, encoder_width=16)


def _bert(**kw):
  model = nnx.eval_shape(lambda: models.build("bert_base", **TINY, **kw))
  sd = {k[3:]: FIX[k] for k in FIX.files if k.startswith("sd/")}
  # as a whole ALPRO checkpoint names them: the text tower's keys behind `text_encoder.`
  sd = {**{f"text_encoder.{k}": v for k, v in sd.items()}, "visual_encoder.x": np.zeros(1)}
  convert.load_into(model, sd, converter=convert.get("hf_bert"))
  return model


def test_concat_fusion_and_qa_logits_match_alpro():
  model = _bert(fusion="concat")
  assert not any("crossattention" in "/".join(map(str, p)) for p, _ in nnx.to_flat_state(
      nnx.state(model, nnx.Param)))
  mask, vmask = FIX["mask"].astype(bool), FIX["visual_mask"].astype(bool)
  text = model(jnp.asarray(FIX["ids"]), jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(text)[mask], FIX["text"][mask], atol=1e-5)
  fuse = nnx.jit(lambda m, *a: m.fuse(*a))
  fused = np.asarray(fuse(model, text, jnp.asarray(mask), jnp.asarray(FIX["visual"]),
                          jnp.asarray(vmask)))
  length = mask.shape[1]
  np.testing.assert_allclose(fused[mask], FIX["fused"][:, :length][mask], atol=1e-5)
  # AlproForSequenceClassification.forward: all video tokens real, classifier on position 0
  full = fuse(model, text, jnp.asarray(mask), jnp.asarray(FIX["visual"]), jnp.ones_like(vmask))
  head = QAHead(16, 5, rngs=nnx.Rngs(0))
  for ours, theirs in (("fc1", "0"), ("fc2", "2")):
    getattr(head, ours).kernel[...] = jnp.asarray(FIX[f"head/{theirs}.weight"].T)
    getattr(head, ours).bias[...] = jnp.asarray(FIX[f"head/{theirs}.bias"])
  np.testing.assert_allclose(np.asarray(head(full[:, 0])), FIX["logits"], atol=1e-5)


def test_alpro_text_encoder_needs_concat_fusion_and_equal_widths():
  with pytest.raises(ValueError, match="crossattention"):  # an ALPRO text encoder has none
    _bert(fusion="cross")
  with pytest.raises(ValueError, match="encoder_width=12 != hidden_size=16"):
    models.build("bert_base", **dict(TINY, encoder_width=12), fusion="concat")


def test_temporal_mean_tokens_match_alpro_timesformer_wrapper():
  pooled = temporal_mean_tokens(jnp.asarray(FIX["raw_tokens"]), frames=3)
  np.testing.assert_allclose(np.asarray(pooled), FIX["pooled_tokens"], atol=1e-6)



def test_qa_configs_and_models_fuse_alpro_style_by_default_and_cross_on_request():
  from configs.videoqa import classifier, mcg
  for config in (classifier.get_config("moving_shapes"), classifier.get_config("nextqa"),
                 classifier.get_config("msrvtt_qa"), mcg.get_config("moving_shapes")):
    assert config.model.text.fusion == "concat"
  towers = dict(vision=dict(name="timesformer_b16", embed_dim=16, depth=1, num_heads=2,
                            patch_size=4, img_size=8, num_frames=3, drop_path=0.0),
                text=dict(name="bert_base", vocab_size=40, hidden_size=16, num_layers=2,
                          num_heads=2, max_position=12, fusion_layer=1, encoder_width=16))
  build = lambda **text: nnx.eval_shape(lambda: models.build(dict(  # noqa: E731
      name="videoqa_classifier", num_answers=5, vision=towers["vision"],
      text=dict(towers["text"], **text))))
  assert build().encoder.text.encoder.layer[1].crossattention is None  # the QA default: concat
  assert build(fusion="cross").encoder.text.encoder.layer[1].crossattention is not None
