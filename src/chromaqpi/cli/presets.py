"""``chromaqpi presets [NAME]``: list presets or print one as TOML (a starting point for your own)."""

from chromaqpi.microscope import Microscope, list_presets


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="preset to print as TOML")


def run(args):
    if args.name is None:
        print("\n".join(list_presets()))
    else:
        scope = Microscope.from_preset(args.name)
        text = scope.to_toml()
        if not scope.sensor.colour_matrix:  # the camera's own channels are the default; show where its matrix goes
            identity = ", ".join("[" + ", ".join("1.0" if i == j else "0.0" for j in range(scope.n_channels)) + "]"
                                 for i in range(scope.n_channels))
            text = text.replace("[sensor]\n", "[sensor]\n# A camera that mixes its channels (colour correction: "
                                "most sRGB output) declares its matrix, rows summing to 1:\n"
                                f"# colour_matrix = [{identity}]\n", 1)
        print(text, end="")
        # Registered channels are the default and not written; show where lateral colour goes.
        n = scope.n_channels
        print("\n# Lateral colour / channel offsets (measure with `chromaqpi register`), one entry per channel:\n"
              f"# [registration]\n# scale = [{', '.join(['1.0'] * n)}]\n"
              f"# shift_px = [{', '.join(['[0.0, 0.0]'] * n)}]\n"
              "# image_shape = [2048, 2048]  # [height, width] fitted on: a magnification is about its centre")
    return 0
