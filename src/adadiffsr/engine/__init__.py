"""The engine: schedule and codebook, tiling, the sampling loop, and the image pipeline."""
