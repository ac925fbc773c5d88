"""What a person reads: figures, their style and the markdown report."""
