"""Training, evaluation and the sparsity / FLOPs accounting that every method reports."""
