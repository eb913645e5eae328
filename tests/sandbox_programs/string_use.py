"""Sandbox corpus: string use (an ordinary program that must pass in every mode)."""

import string


def caesar(text, shift):
    letters = string.ascii_lowercase
    table = str.maketrans(letters, letters[shift:] + letters[:shift])
    return text.translate(table)


def check(candidate):
    assert candidate("abc", 1) == "bcd"
    assert candidate("xyz", 3) == "abc"


check(caesar)
assert string.Template("$who likes $what").substitute(who="tim", what="pie") == "tim likes pie"
assert string.capwords("hello   world") == "Hello World"
assert "{:>5}|{:<3}|{:^5}".format("a", "b", "c") == "    a|b  |  c  "
print(string.digits, string.punctuation[:5])
