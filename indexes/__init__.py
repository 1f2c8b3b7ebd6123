"""Index files: usearch graphs over encoded vectors, with payload, rescoring vectors and a manifest."""
