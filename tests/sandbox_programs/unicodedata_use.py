"""Sandbox corpus: unicodedata use (an ordinary program that must pass in every mode)."""

import unicodedata


def strip_accents(text):
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def check(candidate):
    assert candidate("Crème Brûlée") == "Creme Brulee"


check(strip_accents)
assert unicodedata.name("é") == "LATIN SMALL LETTER E WITH ACUTE"
assert unicodedata.category("A") == "Lu" and unicodedata.numeric("½") == 0.5
print(unicodedata.lookup("SNOWMAN"), unicodedata.unidata_version > "")
