"""Training and evaluation: the loop, its hooks protocol, the shared dense stage's cache."""
