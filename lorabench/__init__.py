"""lorabench: fair, resumable benchmarking of LoRA variants (see README.md)."""

__version__ = "0.1.0"
