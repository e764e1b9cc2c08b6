"""sparsetune: hyperparameter search for sparse neural networks.

`import sparsetune` is cheap on purpose: it loads none of torch, Ray, Optuna or MLflow. The heavy
parts live in subpackages that a caller imports when it needs them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
