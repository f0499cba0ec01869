"""Starting a run from pretrained weights: `config.init_from` (placeholder; being implemented)."""


def apply(init_config, state, shardings):
  raise NotImplementedError("config.init_from is being implemented.")
