"""The domain actors of the supervision tree, one module each."""
