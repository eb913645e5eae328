"""Sandbox corpus: argparse shlex (an ordinary program that must pass in every mode)."""

import argparse
import shlex


def parse(command_line):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("files", nargs="+")
    parser.add_argument("-n", type=int, default=1)
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(shlex.split(command_line))


def check(candidate):
    args = candidate("-n 3 --verbose 'a b.txt' c.txt")
    assert args.files == ["a b.txt", "c.txt"] and args.n == 3 and args.verbose


check(parse)
print(shlex.join(["echo", "it's"]), vars(parse("x")))
