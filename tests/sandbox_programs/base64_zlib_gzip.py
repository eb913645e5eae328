"""Sandbox corpus: base64 zlib gzip (an ordinary program that must pass in every mode)."""

import base64
import gzip
import io
import zlib


def compress_text(text):
    return base64.b64encode(zlib.compress(text.encode())).decode()


def decompress_text(data):
    return zlib.decompress(base64.b64decode(data)).decode()


def check(candidate):
    assert decompress_text(candidate("hello " * 50)) == "hello " * 50


check(compress_text)
assert base64.urlsafe_b64decode(base64.urlsafe_b64encode(b"\xfb\xff")) == b"\xfb\xff"
buffer = io.BytesIO()
with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:
    f.write(b"payload")
assert gzip.decompress(buffer.getvalue()) == b"payload"
with gzip.open("file.gz", "wt") as f:
    f.write("zipped")
with gzip.open("file.gz", "rt") as f:
    assert f.read() == "zipped"
print(base64.b16encode(b"ab"), zlib.crc32(b"abc"), base64.b32encode(b"x"))
