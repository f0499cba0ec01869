"""Binary networks (ReSTE): one config per model, `configs/bnn/<model>.py:<dataset>`."""
