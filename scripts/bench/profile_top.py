"""Summarise a py-spy raw profile (`run.py --profile`): the functions with the most samples,
on-CPU time by itself (self) and with what it calls (total).
`python profile_top.py results/profiles/NAME.txt [--top 25] [--filter jinad] [--within run_app]`."""

from __future__ import annotations

import argparse
import collections
import re

FRAME = re.compile(r"^(.*) \((.*)\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    name, where = m.groups()
    where = re.sub(r".*/site-packages/", "", where)
    where = re.sub(r".*/(jinad/)", r"\1", where)
    return f"{name} ({where})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="only frames whose text holds this")
    parser.add_argument("--within", default="run_app", help="only stacks through this frame (default: the event loop "
                        "thread; '' for all, e.g. to see threads)")
    args = parser.parse_args()
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    with open(args.profile) as f:
        for raw in f:
            stack, _, count = raw.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [short(fr) for fr in stack.split(";")]
            if args.within and not any(args.within in fr for fr in frames):
                continue
            samples += n
            own[frames[-1]] += n
            for fr in set(frames):
                total[fr] += n
    print(f"{samples} samples")
    for title, counter in (("self", own), ("total", total)):
        print(f"-- {title}")
        shown = [(frame, n) for frame, n in counter.most_common() if args.filter in frame][:args.top]
        for frame, n in shown:
            print(f"{100 * n / samples:5.1f}%  {frame}")
        print()


if __name__ == "__main__":
    main()
