"""Implicit-feedback recommendation data for collaborative metric learning (DPCML, Bao et al.,
NeurIPS 2022; statusrank/DPCML `dataloader.py`, `sampler/*.py`).

Sources (`config.data.name`):
- "users_dat": the official repository's `data/<set>/users.dat` (Steam-200k, CiteULike-T, ML-1M as
  shipped): one line per user, `<count> <item> <item> ...`, 0-based item ids.
- "movielens_ratings": a GroupLens `ratings.dat` (`user::movie::rating::timestamp`, MovieLens-1M
  and -10M); ratings >= `min_rating` (4) are positives, raw movie ids are item ids.
- "multi_interest" (generated, no download): `num_items` items in 8 categories of imbalanced sizes
  (40/20/10/10/8/6/4/2 %) and `num_users` users with 2-3 interests, one of them always a minority
  category (the four smallest); each user has about `per_user` positives drawn from their interests.
  `info["item_category"]` and `info["minority"]` let a demo measure recall on minority items.
Users with fewer than `min_interactions` (5) positives are dropped, as the official loader does.
Each user's items are shuffled (seeded by `split_seed`) and cut 3:1:1 into train / val / test items.

Splits: "train" holds the training triplets `{user, pos, neg}`: every (user, positive) pair
`triplets_per_pair` times (10 for the official uniform sampler), each with `num_negatives`
negatives (`neg` is `[S]` when S > 1, a scalar when S = 1) drawn uniformly among the items outside
the user's *training* items, redrawn every step by `preprocess` (a seeded Generator per example),
as the official sampler redraws them every epoch. "val" / "test" hold the users with held-out items
(`{user}`); their `info` carries the dense `[U, N]` `train_mask` and `test_mask` the evaluator uses.
"""
from __future__ import annotations

import os

import numpy as np

from ml_pipelines import data
from ml_pipelines.data.graph_demo import _options

COMMON = dict(min_interactions=5, split_seed=1234, triplets_per_pair=10, num_negatives=1)
USERS_DAT = dict(data_dir="data/steam", **COMMON)
RATINGS = dict(data_dir="data/ml-1m", min_rating=4, **COMMON)
MULTI_INTEREST = dict(num_users=2000, num_items=1000, per_user=30, data_seed=0, **COMMON)
CATEGORY_SHARES = (0.40, 0.20, 0.10, 0.10, 0.08, 0.06, 0.04, 0.02)


def read_users_dat(path: str) -> list[np.ndarray]:
  """Per-user item arrays from an official `users.dat`."""
  out = []
  with open(path) as f:
    for line in f:
      values = [int(v) for v in line.split()]
      if values:
        out.append(np.asarray(values[1:values[0] + 1], np.int64))
  return out


def read_ratings_dat(path: str, min_rating: float) -> tuple[list[np.ndarray], int]:
  """(per-user positive items, number of items = max movie id + 1) from a GroupLens ratings.dat."""
  with open(path, encoding="latin-1") as f:
    rows = np.array([line.strip().split("::")[:3] for line in f if line.strip()], np.float64)
  keep = rows[rows[:, 2] >= min_rating]
  users, items = keep[:, 0].astype(np.int64), keep[:, 1].astype(np.int64)
  order = np.argsort(users, kind="stable")
  users, items = users[order], items[order]
  cuts = np.flatnonzero(np.diff(users)) + 1
  return np.split(items, cuts), int(rows[:, 1].max()) + 1


def multi_interest(num_users: int, num_items: int, per_user: int, seed: int):
  """(per-user items, item categories) of the generated multi-interest set (module docstring)."""
  rng = np.random.default_rng(seed)
  sizes = np.floor(np.array(CATEGORY_SHARES) * num_items).astype(int)
  sizes[0] += num_items - sizes.sum()
  category = np.repeat(np.arange(len(sizes)), sizes)
  members = [np.flatnonzero(category == c) for c in range(len(sizes))]
  users = []
  for _ in range(num_users):
    minority = rng.integers(4, 8)
    others = rng.choice([c for c in range(8) if c != minority], rng.integers(1, 3), replace=False)
    interests = np.concatenate([[minority], others])
    share = rng.dirichlet(np.ones(len(interests)))
    counts = np.maximum(1, np.round(share * per_user).astype(int))
    picks = [rng.choice(members[c], min(n, len(members[c])), replace=False)
             for c, n in zip(interests, counts)]
    users.append(np.unique(np.concatenate(picks)))
  return users, category


def split_items(per_user: list[np.ndarray], min_interactions: int, seed: int
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Per kept user (train, val, test) item arrays, shuffled and cut 3:1:1."""
  rng = np.random.default_rng(seed)
  out = []
  for items in per_user:
    items = np.unique(items)
    if len(items) < min_interactions:
      continue
    items = rng.permutation(items)
    n_train, n_val = int(round(len(items) * 0.6)), int(round(len(items) * 0.2))
    out.append((items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:]))
  for user, (train, _, _) in enumerate(out):
    if len(train) == 0:
      raise ValueError(f"User {user} has no training items after the 3:1:1 split "
                       f"(min_interactions={min_interactions}): nothing to sample negatives "
                       f"against or to filter in evaluation. Raise min_interactions (the official "
                       f"loader keeps users with >= 5 interactions).")
  return out


def interaction_dataset(splits, num_items: int, split: str, o: dict, info: dict) -> data.Dataset:
  """The train triplets or the val/test users of per-user (train, val, test) item arrays."""
  num_users = len(splits)
  train_mask = np.zeros((num_users, num_items), bool)
  for u, (train, _, _) in enumerate(splits):
    train_mask[u, train] = True
  info = {**info, "num_users": num_users, "num_items": num_items}
  if split == "train":
    users = np.concatenate([np.full(len(t), u, np.int32) for u, (t, _, _) in enumerate(splits)])
    pos = np.concatenate([t for t, _, _ in splits]).astype(np.int32)
    reps = o["triplets_per_pair"]
    s = o["num_negatives"]
    shape = () if s == 1 else (s,)

    def preprocess(example, rng):
      u = int(example["user"])
      neg = rng.integers(0, num_items, size=shape or (1,))
      bad = train_mask[u, neg]
      while bad.any():  # redraw while in the user's training items (official sampler)
        neg[bad] = rng.integers(0, num_items, size=int(bad.sum()))
        bad = train_mask[u, neg]
      return {**example, "neg": neg.astype(np.int32).reshape(shape)}
    return data.Dataset(
        source=data.ArraySource({"user": np.repeat(users, reps), "pos": np.repeat(pos, reps)}),
        element_spec={"user": ((), np.int32), "pos": ((), np.int32), "neg": (shape, np.int32)},
        preprocess=preprocess, info={**info, "train_mask": train_mask})
  column = {"val": 1, "test": 2}
  if split not in column:
    raise ValueError(f"Unknown split {split!r}; use train, val or test.")
  test_mask = np.zeros_like(train_mask)
  for u, parts in enumerate(splits):
    test_mask[u, parts[column[split]]] = True
  users = np.flatnonzero(test_mask.any(1)).astype(np.int32)
  return data.Dataset(source=data.ArraySource({"user": users}),
                      element_spec={"user": ((), np.int32)},
                      info={**info, "train_mask": train_mask, "test_mask": test_mask})


@data.register("users_dat")
def users_dat(config, split: str) -> data.Dataset:
  o = _options(config, USERS_DAT, "users_dat dataset")
  per_user = read_users_dat(os.path.join(o["data_dir"], "users.dat"))
  num_items = int(max(len(x) and x.max() for x in per_user)) + 1
  splits = split_items(per_user, o["min_interactions"], o["split_seed"])
  return interaction_dataset(splits, num_items, split, o, {})


@data.register("movielens_ratings")
def movielens_ratings(config, split: str) -> data.Dataset:
  o = _options(config, RATINGS, "movielens_ratings dataset")
  per_user, num_items = read_ratings_dat(os.path.join(o["data_dir"], "ratings.dat"),
                                         o["min_rating"])
  splits = split_items(per_user, o["min_interactions"], o["split_seed"])
  return interaction_dataset(splits, num_items, split, o, {})


@data.register("multi_interest")
def multi_interest_set(config, split: str) -> data.Dataset:
  o = _options(config, MULTI_INTEREST, "multi_interest dataset")
  per_user, category = multi_interest(o["num_users"], o["num_items"], o["per_user"],
                                      o["data_seed"])
  splits = split_items(per_user, o["min_interactions"], o["split_seed"])
  return interaction_dataset(splits, len(category), split, o,
                             {"item_category": category, "minority": np.arange(4, 8)})
