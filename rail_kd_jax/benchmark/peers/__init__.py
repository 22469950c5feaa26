"""PyTorch peers of the JAX train step, for the training-time benchmark (`rail_kd_jax.benchmark`).

- `torch_peer`: what a user would otherwise write: transformers
  `*ForSequenceClassification` teacher and student, the same loss formulas as
  `distill.methods` (every method), torch AdamW with the same schedule and clipping.
- `textbrewer_peer`: TextBrewer's `GeneralDistiller` for the methods its
  intermediate-layer matches express (kd, pkd).

Both need `torch` (`pip install -e .[peers]`); TextBrewer is installed with
`pip install --no-deps textbrewer==0.2.1.post1`.
"""
