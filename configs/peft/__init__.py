"""Parameter-efficient tuning configs (frozen pretrained backbones with adapters / prompts)."""
