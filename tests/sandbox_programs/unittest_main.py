"""Sandbox corpus: unittest main (an ordinary program that must pass in every mode)."""

import unittest


def reverse(text):
    return text[::-1]


class ReverseTest(unittest.TestCase):
    def test_reverse(self):
        self.assertEqual(reverse("abc"), "cba")

    def test_empty(self):
        self.assertEqual(reverse(""), "")


program = unittest.main(exit=False, argv=["main"], verbosity=0)
assert program.result.wasSuccessful()
print("ran", program.result.testsRun)
