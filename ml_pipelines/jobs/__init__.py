"""Stand-alone jobs built on the library: the demos (`multimodal_demo`, `hashing_demo`,
`bnn_compare`), the pyramid texture filter and the parameter / FLOP table (`flops`)."""
