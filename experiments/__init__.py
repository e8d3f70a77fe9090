"""Experiment settings of the paper and the Fashion-MNIST default (YAML, loaded by autokd.config)."""
