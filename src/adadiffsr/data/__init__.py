"""Training and validation data: the photo manifest, ground-truth preparation, degradations."""
