"""Applications built on training: the demo, the study, sweeps and the training-time benchmark."""
