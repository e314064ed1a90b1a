"""The ``mimir`` command: ``mimir demo`` and ``mimir cat``."""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Sequence

import mimir
from mimir.reader import MalformedLogError, iter_lines

__all__ = ["main"]


def demo(output: str, steps: int, delay: float, seed: int) -> None:
    """A short synthetic training run, logged to the console and to ``output``."""
    rng = random.Random(seed)
    with mimir.Logger(filename=output, maxlen=steps) as logger:
        for iteration in range(steps):
            progress = iteration / max(steps - 1, 1)
            training_error = 0.9 * math.exp(-4 * progress) + 0.05 + rng.gauss(0, 0.01)
            entry = {"iteration": iteration, "training_error": round(training_error, 5)}
            if iteration % 10 == 9:
                entry["validation_error"] = round(training_error + 0.03 + rng.gauss(0, 0.01), 5)
            logger.log(entry)
            time.sleep(delay)
        best = min(logger, key=lambda entry: entry["training_error"])
    print(
        f"\nLogged {steps} entries to {output}; lowest training error "
        f"{best['training_error']} at iteration {best['iteration']}.\n"
        f"Try: mimir cat {output} | jq -s 'min_by(.training_error)'"
    )


def cat(filenames: Sequence[str]) -> int:
    """Write the complete entries of each log to standard output as JSON lines."""
    out = sys.stdout.buffer
    for filename in filenames:
        for _, line in iter_lines(filename):
            out.write(line)
    out.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mimir`` command."""
    parser = argparse.ArgumentParser(
        prog="mimir", description="Logging for machine-learning experiments."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {mimir.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_parser = commands.add_parser("demo", help="log a short synthetic training run")
    demo_parser.add_argument("--output", "-o", default="demo.jsonl", help="log file to write")
    demo_parser.add_argument("--steps", type=int, default=60, help="number of iterations")
    demo_parser.add_argument("--delay", type=float, default=0.05, help="seconds per iteration")
    demo_parser.add_argument("--seed", type=int, default=0, help="random seed")

    cat_parser = commands.add_parser(
        "cat", help="print logs as JSON lines (plain or compressed), e.g. for jq"
    )
    cat_parser.add_argument("files", nargs="+", metavar="FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mimir`` command; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            if args.steps < 1:
                raise ValueError("--steps must be at least 1")
            demo(args.output, args.steps, args.delay, args.seed)
            return 0
        return cat(args.files)
    except BrokenPipeError:  # e.g. `mimir cat log.jsonl | head`
        sys.stderr.close()
        return 0
    except (OSError, ValueError, MalformedLogError) as error:
        print(f"mimir {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
