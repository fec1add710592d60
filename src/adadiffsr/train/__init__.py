"""Training loops, one flat function per trainable part, on top of the library (never imported by it)."""
