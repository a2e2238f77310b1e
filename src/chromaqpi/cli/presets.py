"""``chromaqpi presets [NAME]``: list presets or print one as TOML (a starting point for your own)."""

from chromaqpi.microscope import Microscope, list_presets


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="preset to print as TOML")


def run(args):
    if args.name is None:
        print("\n".join(list_presets()))
    else:
        print(Microscope.from_preset(args.name).to_toml(), end="")
    return 0
