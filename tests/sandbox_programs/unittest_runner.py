"""Sandbox corpus: unittest runner (an ordinary program that must pass in every mode)."""

import io
import unittest


def add(a, b):
    return a + b


class AddTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_raises(self):
        with self.assertRaises(TypeError):
            add(1, "x")

    @unittest.skip("shows skipping works")
    def test_skipped(self):
        self.fail("never")


suite = unittest.defaultTestLoader.loadTestsFromTestCase(AddTest)
stream = io.StringIO()
result = unittest.TextTestRunner(stream=stream, verbosity=0).run(suite)
assert result.wasSuccessful(), stream.getvalue()
print(result.testsRun, len(result.skipped))
