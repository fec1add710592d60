"""The bottom layer: the contract every other module imports downward, and nothing above it.

- ``schedule``: the noise schedule, prediction types and the skip-step codebook (AdaDiffSR 3.3);
- ``backbone``: what a diffusion SR model declares and does for the engine;
- ``policy``: what a region policy observes after a step and what it decides;
- ``gain``: the information gain of eq. 1 and the performance function that feeds it;
- ``step``: one denoising step's arithmetic and the callables the sampler is handed;
- ``pixels``: the one pixel-range convention at the boundaries (``[0, 1]`` outside, ``[-1, 1]`` inside);
- ``precision``: autocast for a compute dtype.

``tests/test_layers.py`` fails on an import that runs upward.
"""
