"""The outcome codec's former home, kept so existing imports work; it lives in
`lorabench.outcomes` (a leaf module), since importing anything under `store` imports SQLAlchemy,
which a job's trainer child must not pay for (docs/DESIGN.md, "Select split and
per-example outcomes")."""

from lorabench.outcomes import KINDS, decode_outcomes, encode_outcomes

__all__ = ["KINDS", "decode_outcomes", "encode_outcomes"]
