"""Sandbox corpus: secrets uuid (an ordinary program that must pass in every mode)."""

import secrets
import uuid


def token_lengths():
    return len(secrets.token_hex(8)), len(secrets.token_bytes(5)), len(secrets.token_urlsafe(6))


def check(candidate):
    assert candidate() == (16, 5, 8)


check(token_lengths)
assert uuid.uuid4().version == 4
assert uuid.uuid5(uuid.NAMESPACE_DNS, "example.com") == uuid.UUID(
    "cfbff0d1-9375-5685-968c-48ce8b15ae17"
)
assert secrets.randbelow(10) < 10 and secrets.compare_digest("a", "a")
print(uuid.uuid3(uuid.NAMESPACE_URL, "x"))
