"""Sandbox corpus: shutil glob fnmatch (an ordinary program that must pass in every mode)."""

import fnmatch
import glob
import os
import shutil


def matching(names, pattern):
    return sorted(fnmatch.filter(names, pattern))


def check(candidate):
    assert candidate(["a.py", "b.txt", "c.py"], "*.py") == ["a.py", "c.py"]


check(matching)
os.makedirs("src/pkg")
for name in ("src/a.py", "src/pkg/b.py", "src/c.txt"):
    with open(name, "w") as f:
        f.write(name)
assert sorted(glob.glob("src/**/*.py", recursive=True)) == ["src/a.py", "src/pkg/b.py"]
shutil.copytree("src", "copy")
shutil.copy("src/a.py", "copy/a2.py")
shutil.move("copy/c.txt", "moved.txt")
assert sorted(os.listdir("copy")) == ["a.py", "a2.py", "pkg"]
shutil.rmtree("copy")
shutil.rmtree("src")
assert not os.path.exists("copy") and os.path.exists("moved.txt")
print(matching(["x.md", "y.MD"], "*.md"), shutil.which("definitely-not-a-command"))
