"""`hashrank` / `python -m app`: one argparse entry point whose subcommands live in app/commands/.

Each command module exposes add_parser(subparsers) -> None and run(args) -> int, and keeps heavy imports
(torch, onnxruntime) inside run(), so `hashrank --help` stays fast. Adding a command is one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from app.errors import RerankError

COMMANDS = [
    "score",
    "bulk_score",
    "info",
    "export_onnx",
    "serve",
    "eval",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashrank", description="CPU cross-encoder reranking with BERT Hash models")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default: WARNING)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"app.commands.{name}")
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        # The module owns its subcommand's name; whatever it registered dispatches to its run().
        for added in set(subparsers.choices) - before:
            subparsers.choices[added].set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args))
    except RerankError as exc:
        # Expected failures (bad model dir, bad input) are one line, not a traceback.
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hashrank score ... | head`
        sys.stderr.close()
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
