"""Sandbox corpus: contextlib use (an ordinary program that must pass in every mode)."""

import contextlib
import io


@contextlib.contextmanager
def tag(name, out):
    out.append(f"<{name}>")
    yield
    out.append(f"</{name}>")


def render():
    out = []
    with tag("b", out):
        out.append("x")
    return "".join(out)


def check(candidate):
    assert candidate() == "<b>x</b>"


check(render)
with contextlib.suppress(KeyError):
    {}["missing"]
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    print("captured")
assert buffer.getvalue() == "captured\n"
with contextlib.ExitStack() as stack:
    files = [stack.enter_context(io.StringIO(str(i))) for i in range(3)]
assert all(f.closed for f in files)
print(render())
