"""The benchmark: methods side by side on the same images, with metrics, timings and plots."""
