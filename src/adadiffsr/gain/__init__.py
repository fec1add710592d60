"""MMLE: the information gain of each tile along the denoising path (AdaDiffSR 3.2, eq. 1-2)."""
