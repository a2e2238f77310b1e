"""How much a wrongly declared condenser aperture or lamp colour costs each method.

Usage: python benchmarks/bench_illumination.py [--n 8] [--condenser 0.5,0.75,1.5,2] [--lamp=-500,300] [--steps K]

Users set the condenser iris by eye and rarely know a halogen lamp's colour temperature (it follows the
lamp voltage), yet both change the defocus contrast: the aperture the partial coherence, the colour the
channels' effective wavelengths. Each `family` cell scene of bench_microscopes.py (same seeds, the same
noise draw) is simulated with the actual illumination and every method is given the declared microscope:

- condenser rows: the actual condenser NA is the declared one times f (at most the objective's NA);
- lamp rows, on the scenes whose declared lamp is a halogen (the family's other lamps are LEDs): the
  actual lamp is a halogen dT kelvin from the declared temperature, or (row 'white LED') the built-in
  phosphor white LED (`spectra.illuminant = "led"`): an LED microscope declared with the halogen preset.

TIE and WOTF use the declared optics; the `default` networks never read them (they were trained across
condenser σ 0.3-0.8 and halogen 2800-3400 K or LED lamps), so their change is the optics' own. Rows 'told':
TIE and WOTF given the actual microscope, what knowing it recovers. Scores: offset-aligned nMAE (mean
offset), mean over images, and its ratio to the scenes as declared. Writes benchmarks/results/illumination.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from tqdm import tqdm

from _common import model_steps, write_results
from bench_microscopes import METHODS, add_scene_arguments, class_sample, reconstruct_methods, variant_table
from chromaqpi.metrics import normalised_mae

CLASSICAL = ("tie", "wotf")


def condenser(f: float):
    def actual(m):
        return m.replace(optics={"na_condenser": min(m.optics.na_condenser * f, m.optics.na_objective)})
    return actual


def lamp(dt: float):
    def actual(m):
        return m.replace(spectra={"temperature_k": m.spectra.temperature_k + dt})
    return actual


def white_led(m):
    return m.replace(spectra={"illuminant": "led"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scene_arguments(parser, n=8)
    parser.add_argument("--condenser", default="0.5,0.75,1.5,2", help="comma-separated factors f on the condenser NA")
    parser.add_argument("--lamp", default="-500,300", help="comma-separated dT (K) of a halogen lamp (--lamp=-500,300)")
    args = parser.parse_args()
    args.steps = model_steps([args.model], args.steps)
    factors = [float(v) for v in args.condenser.split(",") if v.strip()]
    shifts = [float(v) for v in args.lamp.split(",") if v.strip()]
    started = datetime.now()
    # (table, label, actual microscope, whether the classical methods are told it, halogen scenes only)
    cases = [("condenser", "as declared", None, False, False)]
    cases += [("condenser", f"NA x {f:g}{told}", actual, bool(told), False)
              for f in factors for actual in [condenser(f)] for told in ("", ", told")]
    cases += [("lamp", "as declared", None, False, True)]
    cases += [("lamp", f"{dt:+g} K{told}", actual, bool(told), True)
              for dt in shifts for actual in [lamp(dt)] for told in ("", ", told")]
    cases += [("lamp", f"white LED{told}", white_led, bool(told), True) for told in ("", ", told")]
    nmae = {(table, label, m): [] for table, label, *_ in cases for m in METHODS}
    halogen = 0
    for i in tqdm(range(args.n), desc="images"):
        simulated = {}  # each actual illumination simulated once: its told and untold rows share the image

        def sample(actual):
            if actual not in simulated:
                simulated[actual] = class_sample("family", i, args.size, actual=actual)
            return simulated[actual]

        declared = sample(None)[2]
        is_halogen = declared.spectra.illuminant == "blackbody"
        halogen += is_halogen
        for table, label, actual, told, halogen_only in cases:
            if halogen_only and not is_halogen:
                continue
            images, true, _ = sample(actual)
            scope = actual(declared) if told else declared
            methods = CLASSICAL if told else METHODS
            for method, est in reconstruct_methods(images, scope, i, steps=args.steps, model=args.model,
                                                   methods=methods).items():
                nmae[table, label, method].append(float(normalised_mae(est, true, align="mean")))
            if told:  # the networks do not read the declared microscope: their scores are the untold row's
                for method in set(METHODS) - set(CLASSICAL):
                    nmae[table, label, method].append(nmae[table, label.removesuffix(", told"), method][-1])
    tables = {"lamp": "(no scene with a halogen lamp)"}
    for table in ("condenser", "lamp") if halogen else ("condenser",):
        rows = [label for t, label, *_ in cases if t == table]
        tables[table] = variant_table({(label, m): v for (t, label, m), v in nmae.items() if t == table},
                                      rows, "as declared", first="actual", versus="declared")
    body = (f"Model `{args.model}`; {args.n} cell scenes of {args.size} px (the `family` class of microscopes.md, "
            f"same seeds and noise draws); ZMD one {args.steps}-step DDIM draw at the card's temperature (seed 1000 "
            f"+ image index); {(datetime.now() - started).seconds / 60:.1f} min in all.\n\n"
            f"## Condenser aperture (actual NA = declared x f, at most the objective's)\n\n{tables['condenser']}\n\n"
            f"## Lamp colour ({halogen} of the {args.n} scenes with a halogen lamp; actual: a halogen at the declared "
            f"temperature + dT, or a white LED)"
            f"\n\n{tables['lamp']}\n")
    write_results("illumination", "Cost of a wrongly declared condenser aperture or lamp colour", body)


if __name__ == "__main__":
    main()
