"""``chromaqpi`` command line: lazy subcommands, one-line user errors (exit 2; file-system errors exit 1)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys

from chromaqpi import __version__

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args).
COMMANDS = {
    "simulate": ("chromaqpi.cli.simulate", "simulate camera images from phase maps or ordinary images"),
    "reconstruct": ("chromaqpi.cli.reconstruct", "reconstruct phase (rad), OPD (nm) from RGB micrographs"),
    "focus": ("chromaqpi.cli.focus", "estimate how far the planes sit from the declared focus; write the fitted microscope"),
    "register": ("chromaqpi.cli.register", "fit lateral colour (channel magnification, offset) from a calibration image"),
    "response": ("chromaqpi.cli.response", "measure the camera's tone curve from frames at several exposure times"),
    "measure": ("chromaqpi.cli.measure", "segment objects in phase images; area, OPD, dry mass as CSV"),
    "evaluate": ("chromaqpi.cli.evaluate", "compare methods on a fixed evaluation set"),
    "dataset": ("chromaqpi.cli.dataset", "build, preview and verify synthetic training datasets"),
    "train": ("chromaqpi.cli.train", "train mean / ddpm / cvdm / zmd models"),
    "demo": ("chromaqpi.cli.demo", "run the bundled demo and write results/demo"),
    "presets": ("chromaqpi.cli.presets", "list or print microscope presets as TOML"),
}


HEAVY = {"reconstruct", "focus", "register", "evaluate", "train", "demo", "dataset", "simulate"}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (like every other user error), pointing at --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict, str | None]:
    parser = _Parser(
        prog="chromaqpi",
        description="Quantitative phase imaging from the chromatic defocus of one RGB brightfield image.",
    )
    parser.add_argument("--version", action="version", version=f"chromaqpi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (keeps `--help` fast).
    chosen = next((a for a in argv if a in COMMANDS), None)
    subparsers = {}
    for name, (module, help_text) in COMMANDS.items():
        subparsers[name] = p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser, subparsers, chosen


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings as one line, like errors (not the file and source line of the library call); restored after."""
    import warnings

    def one_line(message, category, *_args, **_kw):
        kind = "warning" if issubclass(category, UserWarning) else category.__name__
        return f"chromaqpi {command}: {kind}: {message}\n"

    previous, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from chromaqpi.errors import ChromaQPIError

    if argv is None:  # the console script: a `kill` (SIGTERM) cleans up like Ctrl-C
        signal.signal(signal.SIGTERM, _interrupt)
    argv = sys.argv[1:] if argv is None else argv
    parser, subparsers, chosen = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand, whose --help lists its options
        subparsers.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if chosen is None or args.command is None:
        parser.print_help()
        return 2
    if args.command in HEAVY:
        import torch

        # Before any thread pool exists, so that every worker thread inherits it:
        # subnormal floats slow CPU training and sampling several-fold.
        torch.set_flush_denormal(True)
    from chromaqpi.cli.common import remove_empty_outputs

    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        with _one_line_warnings(args.command):
            return int(module.run(args) or 0)
    except ChromaQPIError as exc:
        remove_empty_outputs()
        print(f"chromaqpi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (a folder where a file goes, disk full, permissions)
        remove_empty_outputs()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"chromaqpi {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        remove_empty_outputs()
        print("chromaqpi: interrupted", file=sys.stderr)
        return 130
    except BaseException:  # a bug: keep its traceback, but leave no empty output folder
        remove_empty_outputs()
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
