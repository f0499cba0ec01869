"""Exact Hamming search over binary codes: a word-packed linear scan (`hamming`), multi-index
hashing (`multi_index`), and the `hash_index` command that builds and queries an index of saved codes."""
