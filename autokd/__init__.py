"""autokd: knowledge-distillation-aware neural architecture search (AutoKD) over NAGO student generators."""

__version__ = "0.1.0"
