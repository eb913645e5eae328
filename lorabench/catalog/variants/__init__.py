"""One declaration module per variant: its params dataclass and `VARIANT` (a VariantInfo)."""
