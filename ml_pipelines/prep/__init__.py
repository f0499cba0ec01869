"""Prepare commands: raw dataset directories -> ArrayRecord files the data builders read
(`python -m ml_pipelines.prep.av`, `python -m ml_pipelines.prep.hashing`). Run once, offline."""
