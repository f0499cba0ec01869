"""Pure loss functions: arrays in, arrays out. One module per family; import them directly."""
