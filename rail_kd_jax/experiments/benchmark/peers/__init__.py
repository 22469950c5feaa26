"""PyTorch peers of the JAX train step, for the training-time benchmark (`rail_kd_jax.benchmark`).

- `torch_peer`: what a user would otherwise write: transformers
  `*ForSequenceClassification` teacher and student, the same loss formulas as
  `distill.methods` (every method), torch AdamW with the same schedule and clipping.
- `textbrewer_peer`: TextBrewer's `GeneralDistiller` for the methods its
  intermediate-layer matches express (kd, pkd).
- `predict_peer`: an export applied to new text with PyTorch eager (the peer of
  `python -m rail_kd_jax.predict`), and the lines/s and memory comparison of the two.

All three need `torch` (`pip install -e .[peers]`); TextBrewer is installed with
`pip install --no-deps textbrewer==0.2.1.post1`.
"""
