"""Losses of the deep-hashing family.

- ADSH (Jiang & Li, AAAI 2018, "Asymmetric Deep Supervised Hashing", Eq. 3-4 and Algorithm 1;
  official jiangqy/ADSH-AAAI2018 `ADSH_pytorch`):
  soft similarity, the asymmetric loss of one mini-batch, the whole objective J and the bit-by-bit
  discrete update of the database codes V.
- ExchNet (Cui et al., ECCV 2020, "ExchNet: A Unified Hashing Network for Large-Scale Fine-Grained
  Image Retrieval", Sec. 3.2-3.3; no official code, checked against the reimplementation by
  SEMICON's authors, aassxun/DSH_Analysis `models/exchnet_loss.py`): spatial and channel diversity
  (Hellinger) and the anchor alignment loss.
- DMIH (arXiv 1905.10980): the search-aware multi-index (SAMI) loss -- the paper body was not
  available, so the form here is an assumption, stated in `sami_loss`.
- MCH (arXiv 2008.01503): the REINFORCE objective of the code-selection policy and its reward.

Labels are multi-hot `[N, L]` float arrays throughout: `S_ij = 1` iff `l_i . l_j > 0`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


# --- ADSH -----------------------------------------------------------------------------------
def similarity(labels_a: jax.Array, labels_b: jax.Array) -> jax.Array:
  """S_ij = 1 when item i of `a` and item j of `b` share a label, else 0 (float32)."""
  return (labels_a.astype(jnp.float32) @ labels_b.astype(jnp.float32).T > 0).astype(jnp.float32)


def soft_ratio(s: jax.Array) -> jax.Array:
  """r = sum S / sum (1 - S): the positive/negative balance of the official code."""
  return jnp.sum(s) / jnp.maximum(jnp.sum(1.0 - s), 1.0)


def soft_similarity(s: jax.Array, r: jax.Array | float) -> jax.Array:
  """S~ = S (1 + r) - r: +1 for similar pairs, -r for dissimilar ones (official ADSH code)."""
  return s * (1.0 + r) - r


def adsh_loss(u: jax.Array, v: jax.Array, s_soft: jax.Array, v_batch: jax.Array, gamma: float,
              num_database: int, scale: float = 1.0) -> jax.Array:
  """ADSH mini-batch loss (official `ADSHLoss`):

      [sum_ij (u_i^T v_j - c S~_ij)^2 + gamma sum_i ||v_{Omega_i} - u_i||^2] / (n |batch|)

  u: [B, c] tanh outputs; v: [n, c] database codes; s_soft: [B, n]; v_batch: [B, c] rows of V of the
  batch's own database indices. `scale` multiplies the whole loss (12/c for ExchNet and SEMICON).
  """
  c = u.shape[-1]
  square = jnp.sum((u @ v.T - c * s_soft) ** 2)
  quant = gamma * jnp.sum((v_batch - u) ** 2)
  return scale * (square + quant) / (num_database * u.shape[0])


def adsh_objective(u: jax.Array, v: jax.Array, s_soft: jax.Array, omega: jax.Array,
                   gamma: float) -> jax.Array:
  """J(U, V) = sum_{i in Omega} sum_j (u_i^T v_j - c S~_ij)^2 + gamma sum_i ||v_{Omega_i} - u_i||^2
  (ADSH Eq. 4). u: [m, c]; v: [n, c]; s_soft: [m, n]; omega: [m] database indices of the rows of u.
  """
  c = u.shape[-1]
  return jnp.sum((u @ v.T - c * s_soft) ** 2) + gamma * jnp.sum((v[omega] - u) ** 2)


def discrete_update(v: jax.Array, u: jax.Array, s_soft_t_u: jax.Array, omega: jax.Array,
                    gamma: float) -> jax.Array:
  """ADSH's bit-by-bit update of the database codes (Algorithm 1, official `calc_V`):

      Ubar = 0 (n x c); Ubar[Omega] = U; Q = -2 c S~^T U - 2 gamma Ubar
      for k in 1..c:  V[:, k] = -sign(2 V[:, not k] (U[:, not k]^T U[:, k]) + Q[:, k])

  Each column step minimises J over V[:, k] exactly (J is separable over the rows of V for a fixed
  column), so J never increases once V is binary. Columns are updated in order, each seeing the new
  values of the previous ones.

  v: [n, c]; u: [m, c] (padding rows all zero contribute nothing); s_soft_t_u: [n, c] = S~^T U
  (computed by the caller, chunked for large n); omega: [m] row indices of u in V.
  """
  v, u, omega = jnp.asarray(v), jnp.asarray(u), jnp.asarray(omega)
  n, c = v.shape
  u_bar = jnp.zeros((n, c), u.dtype).at[omega].add(u)
  q = -2.0 * c * s_soft_t_u - 2.0 * gamma * u_bar
  uu = u.T @ u  # [c, c]: U[:, not k]^T U[:, k] is column k of this with entry k removed

  def column(k, v):
    w = uu[:, k].at[k].set(0.0)  # drops bit k itself
    coef = 2.0 * (v @ w) + q[:, k]
    return v.at[:, k].set(-jnp.sign(coef))
  return jax.lax.fori_loop(0, c, column, v)


def soft_ratio_of_rows(omega_labels: jax.Array, db_labels: jax.Array, weight: jax.Array,
                       chunk: int = 4096) -> jax.Array:
  """r = sum S / sum (1 - S) for S = similarity(omega_labels, db_labels), the sampled rows Omega
  against the whole database (the official `calc_sim`, run on each outer iteration's sample),
  without forming the m x n matrix: database rows go in chunks of `chunk`. weight [m] in {0, 1}
  drops padding rows of omega_labels."""
  n = db_labels.shape[0]
  pad = (-n) % chunk
  labels = jnp.pad(db_labels, ((0, pad), (0, 0))).reshape(-1, chunk, db_labels.shape[-1])
  similar = jnp.sum(jax.lax.map(lambda lab: similarity(omega_labels, lab).sum(1), labels), 0)
  similar = jnp.sum(weight * similar)  # padded database rows (all-zero labels) match nothing
  return similar / jnp.maximum(jnp.sum(weight) * n - similar, 1.0)


def soft_similarity_t_u(db_labels: jax.Array, omega_labels: jax.Array, u: jax.Array, r: jax.Array,
                        chunk: int = 4096) -> jax.Array:
  """S~^T U for S~ = soft(similarity(omega_labels, db_labels)) without forming the m x n matrix at
  once: database rows go in chunks of `chunk`. Returns [n, c]."""
  n = db_labels.shape[0]
  pad = (-n) % chunk
  labels = jnp.pad(db_labels, ((0, pad), (0, 0))).reshape(-1, chunk, db_labels.shape[-1])

  def one(lab):
    return soft_similarity(similarity(lab, omega_labels), r) @ u
  out = jax.lax.map(one, labels).reshape(-1, u.shape[-1])
  return out[:n]


# --- ExchNet ----------------------------------------------------------------------------------
def hellinger(p: jax.Array, q: jax.Array) -> jax.Array:
  """H(p, q) = ||sqrt p - sqrt q||_2 / sqrt 2 over the last axis."""
  return jnp.sqrt(jnp.sum((jnp.sqrt(p) - jnp.sqrt(q)) ** 2, -1) + 1e-12) / jnp.sqrt(2.0)


def _mean_pairwise_hellinger(p: jax.Array) -> jax.Array:
  """p: [B, M, K] distributions -> [B] mean of H(p_i, p_j) over pairs i < j."""
  m = p.shape[1]
  i, j = jnp.triu_indices(m, 1)
  return jnp.mean(hellinger(p[:, i], p[:, j]), -1)


def spatial_diversity_loss(part_maps: jax.Array) -> jax.Array:
  """ExchNet L_sp = sum_batch (1 - mean_{i<j} H(p_i, p_j)), p_j = softmax_HW(mean_C F^j).

  part_maps: [B, M, H, W, C] local feature maps of the M parts."""
  b, m = part_maps.shape[:2]
  p = jax.nn.softmax(jnp.mean(part_maps, -1).reshape(b, m, -1).astype(jnp.float32), -1)
  return jnp.sum(1.0 - _mean_pairwise_hellinger(p))


def channel_diversity_loss(part_features: jax.Array, margin: float = 0.4) -> jax.Array:
  """ExchNet L_ch = sum_batch relu(t - mean_{i<j} H(q_i, q_j)), q_j = softmax_C(f^j), t = 0.4.

  part_features: [B, M, D] pooled local features."""
  q = jax.nn.softmax(part_features.astype(jnp.float32), -1)
  return jnp.sum(jax.nn.relu(margin - _mean_pairwise_hellinger(q)))


def alignment_loss(part_features: jax.Array, anchors: jax.Array, classes: jax.Array,
                   norm: str = "batch") -> jax.Array:
  """ExchNet anchor alignment of the local features (Cui et al., ECCV 2020, Sec. 3.2). The paper's
  equation could not be read here, so this follows the reference implementation by SEMICON's
  authors (aassxun/DSH_Analysis `models/exchnet_loss.py`, `Exch_Loss`):

      norm="batch":        ||F - C_Y||_F / B    one Frobenius norm over the batch's [B, M D] matrix
                                                of rows f_i - C_{y_i} (reference, default)
      norm="per_example":  sum_i ||f_i - C_{y_i}||_2 / B

  part_features: [B, M, D]; anchors: [K, M, D] per-class means; classes: [B] int."""
  diff = (part_features - anchors[classes]).reshape(part_features.shape[0], -1)
  if norm == "batch":
    return jnp.sqrt(jnp.sum(diff ** 2) + 1e-12) / part_features.shape[0]
  if norm == "per_example":
    return jnp.sum(jnp.sqrt(jnp.sum(diff ** 2, -1) + 1e-12)) / part_features.shape[0]
  raise ValueError(f"norm must be 'batch' or 'per_example', not {norm!r}.")


def exchange_features(part_features: jax.Array, anchors: jax.Array, classes: jax.Array,
                      keep: jax.Array) -> jax.Array:
  """ExchNet feature exchange: part j of example i stays `f_i^j` where keep[i, j], else becomes the
  class anchor `C^{y_i}_j`. keep ~ Bernoulli(0.5) is drawn by the caller."""
  return jnp.where(keep[..., None], part_features, anchors[classes])


# --- DMIH ---------------------------------------------------------------------------------------
def sami_loss(u: jax.Array, labels: jax.Array, num_blocks: int, radius: int) -> jax.Array:
  """Search-aware multi-index loss for DMIH.

  ASSUMPTION (only the abstract of arXiv 1905.10980 was readable): multi-index search with m blocks
  finds every item within Hamming radius r of a query by probing each block's table within radius
  floor(r / m) (pigeonhole). The loss therefore pulls the relaxed block distance of every
  same-identity pair in the batch inside that block radius:

      L = mean_{(i,j): S_ij = 1, i != j} mean_k relu(d_k(u_i, u_j) - floor(r / m))^2,
      d_k(u_i, u_j) = (b_k - u_i^k . u_j^k) / 2     (b_k bits in block k)

  u: [B, c] relaxed codes, blocks are contiguous slices as `multi_index` splits them (the first
  c - m(b-1) blocks have b = ceil(c/m) bits, the rest b-1). labels: [B, L] multi-hot.
  """
  c = u.shape[-1]
  b = -(-c // num_blocks)
  sizes = [b if k < c - num_blocks * (b - 1) else b - 1 for k in range(num_blocks)]
  starts = [sum(sizes[:k]) for k in range(num_blocks)]
  block_radius = radius // num_blocks
  s = similarity(labels, labels) * (1.0 - jnp.eye(u.shape[0]))
  per_block = []
  for start, size in zip(starts, sizes):
    ub = u[:, start:start + size]
    d = (size - ub @ ub.T) / 2.0
    per_block.append(jax.nn.relu(d - block_radius) ** 2)
  penalty = jnp.mean(jnp.stack(per_block), 0)
  return jnp.sum(penalty * s) / jnp.maximum(jnp.sum(s), 1.0)


# --- MCH ----------------------------------------------------------------------------------------
def selection_reward(codes: jax.Array, keep: jax.Array, db_codes: jax.Array, s: jax.Array,
                     radius: int, cost: float) -> jax.Array:
  """MCH reward of a code selection [our form; the paper's reward was not available]: recall of the
  union of the Hamming balls of radius `radius` around the kept codes (relevant items found / all
  relevant items, 0 when there are none), minus `cost` per kept code -- each kept code costs one
  ball of bucket probes, so the policy trades recall against search cost.

  codes: [B, R, c] in {-1, +1}; keep: [B, R] bool; db_codes: [N, c] in {-1, +1}; s: [B, N] similarity.
  Returns [B]."""
  c = codes.shape[-1]
  dist = (c - jnp.einsum("brc,nc->brn", codes, db_codes)) / 2.0
  hit = jnp.any((dist <= radius) & keep[..., None], axis=1)  # [B, N]
  relevant = jnp.sum(s, -1)
  recall = jnp.sum(hit * s, -1) / jnp.maximum(relevant, 1.0)
  return recall - cost * jnp.sum(keep, -1)


def reinforce_loss(logits: jax.Array, actions: jax.Array, reward: jax.Array) -> jax.Array:
  """REINFORCE with the batch-mean baseline (Williams 1992), Bernoulli policy per region code:

      L = -mean_i (R_i - mean R) sum_r log pi(a_ir),  pi(a=1) = sigmoid(logit).

  logits, actions: [B, R]; reward: [B] (no gradient flows through it)."""
  a = actions.astype(logits.dtype)
  logp = jnp.sum(a * jax.nn.log_sigmoid(logits) + (1 - a) * jax.nn.log_sigmoid(-logits), -1)
  advantage = jax.lax.stop_gradient(reward - jnp.mean(reward))
  return -jnp.mean(advantage * logp)
