"""Sandbox corpus: hashlib use (an ordinary program that must pass in every mode)."""

import hashlib
import hmac


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def check(candidate):
    assert candidate("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


check(digest)
assert hashlib.md5(b"abc").hexdigest() == "900150983cd24fb0d6963f7d28e17f72"
assert (
    hashlib.blake2b(b"x", digest_size=8).hexdigest()
    == hashlib.blake2b(b"x", digest_size=8).hexdigest()
)
mac = hmac.new(b"key", b"message", "sha1").hexdigest()
assert hmac.compare_digest(mac, hmac.new(b"key", b"message", "sha1").hexdigest())
print(digest("lorabench")[:16], hashlib.sha1(b"abc").hexdigest())
