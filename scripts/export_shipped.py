"""Export trained runs as the shipped models: fp16 safetensors + config.json + MODEL_CARD.md.

Usage: python scripts/export_shipped.py [--checkpoint best|last] [NAME ...]
       (default: best; names default: default paper-2shot paper-rgb)
       python scripts/export_shipped.py --refresh-envelope [NAME ...]
       python scripts/export_shipped.py --sampling-steps K [NAME ...]
       python scripts/export_shipped.py --sampling-temperature T [NAME ...]
       python scripts/export_shipped.py --std-scale S NAME

NAME is a family (its ZMD model) or FAMILY-ddpm / FAMILY-cvdm (the comparison models).
Reads runs/KIND-FAMILY/checkpoints/best (EMA weights with the best validation
MAE; falls back to last), writes src/chromaqpi/weights/NAME/. The card's
``microscope`` entry lists the family's ranges so that inference warns when a
microscope falls outside them. An export keeps the recommended DDIM steps
(``sampling.steps``) of the model it replaces and says so: re-measure them for the new weights
(``benchmarks/bench_steps.py`` on validation folders) and record them with --sampling-steps; likewise
the temperature of a single draw (``sampling.temperature``, ``benchmarks/bench_temperature.py``,
--sampling-temperature). The calibration scale of the std map (``uncertainty.scale``) belongs to the
weights it was fitted for, so an export drops it: fit it again (``benchmarks/bench_uncertainty.py
--calibrate``) and record it with --std-scale.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
from pathlib import Path

import torch

from chromaqpi.datasets.randomize import resolve_ranges
from chromaqpi.models.registry import card_steps, family_envelope, is_temperature, read_card, read_weights
from chromaqpi.training.checkpoint import atomic_write_bytes, atomic_write_json, write_model_dir

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 25 * 2**20
CLIP_RESIDUAL = 4.0


def training_summary(run: Path) -> dict:
    rows = list(csv.DictReader(open(run / "train.csv")))
    cfg = json.loads((run / "train_config.json").read_text())
    val = []
    if (run / "val.csv").exists():
        val = list(csv.DictReader(open(run / "val.csv")))
    batch = cfg.get("data", {}).get("batch_size", 1)
    log_every = cfg.get("logging", {}).get("log_every", 1)
    seconds = sum(log_every * batch / float(r["samples_per_s"]) for r in rows if float(r.get("samples_per_s") or 0) > 0)
    notes = (run / "NOTES.md").read_text().strip() if (run / "NOTES.md").exists() else ""
    # scripts/train_gpu.sh records its command; train_shipped.sh runs are described by their settings
    command = (run / "COMMAND.txt").read_text().strip() if (run / "COMMAND.txt").exists() else ""
    return {"steps": int(rows[-1]["step"]) if rows else 0, "config": cfg, "last": rows[-1] if rows else {},
            "notes": notes, "command": command,
            "hours": seconds / 3600,
            "val": val, "samples_per_s": float(rows[-1].get("samples_per_s", "nan")) if rows else float("nan")}


def dataset_summary(folder: str) -> dict:
    config = json.loads((ROOT / folder / "manifest.json").read_text()).get("config", {})
    sources = ", ".join(f"{s['name']}:{s['weight']}" for s in config.get("sources", []))
    return {"folder": folder, "sources": sources, "family": config.get("family", {}).get("name"),
            "n": config.get("n"), "shape": config.get("shape"), "seed": config.get("seed")}


KINDS = {
    "zmd": ("Zero-Mean Diffusion", """ZMD = a mean network mu(X) (also served as `method="mean"`) plus a conditional diffusion model
with a learned per-pixel schedule (CVDM) on the residual (Y - mu)/sigma_zmd."""),
    "ddpm": ("conditional DDPM, comparison model", """A conditional DDPM (cosine schedule, noise prediction) on the normalised phase, conditioned on
the images; no physics prior. The baseline of the reference paper's comparison: the same U-Net size,
data, crops and step budget as the ZMD model of this family."""),
    "cvdm": ("CVDM, comparison model", """A conditional diffusion model with a learned per-pixel noise schedule (CVDM) on the normalised
phase, conditioned on the images; no physics prior. A comparison model of the reference paper: the same
U-Net size, data, crops and step budget as the ZMD model of this family."""),
}


def split_name(name: str) -> tuple[str, str]:
    """Shipped model name -> (family, kind): ``paper-2shot-ddpm`` -> (paper-2shot, ddpm)."""
    for kind in ("ddpm", "cvdm"):
        if name.endswith(f"-{kind}"):
            return name[: -len(kind) - 1], kind
    return name, "zmd"


def model_config_lines(kind: str, model: dict, cfg: dict) -> str:
    unet = json.dumps(model.get("unet"))
    if kind != "zmd":
        return (f"U-Net `{unet}`; target normalised as 2 (Y - {model.get('target_offset')}) / "
                f"{model.get('target_scale')} - 1 rad, estimates clipped to that range while sampling: "
                f"`{model.get('clip_denoised')}`.")
    return f"""mean U-Net and noise U-Net `{unet}`;
  sigma_zmd = {model.get('sigma_zmd', 0.5)} rad; sampled residual clipped to ±{model.get('clip_residual')} sigma_zmd;
  noise net output parametrisation `{model.get('prediction', 'eps')}`; schedule detached from the noise loss:
  `{model.get('loss', {}).get('detach_schedule_in_noise')}`.
- physics prior: `{model.get('prior')}` (with `tie` the mean network outputs TIE + a learned correction,
  and TIE is computed on the whole image with the caller's microscope); offset-invariant loss (the
  unobservable per-image phase offset is not trained): `{model.get('offset_invariant', False)}`.
- initialised from: {('`' + str(cfg.get('init_from')) + '` (the previously shipped model of this name)') if cfg.get('init_from') else 'random (fresh training)'}."""


def validation_table(kind: str, val: list[dict]) -> str:
    f = lambda v, key: f"{float(v.get(key) or 'nan'):.4f}"  # noqa: E731
    if kind == "zmd":
        head = "| step | ZMD aligned MAE (rad) | ZMD raw MAE (rad) | mean net aligned MAE (rad) | images |\n|---|---|---|---|---|"
        rows = [f"| {v.get('step')} | {f(v, 'mae_rad')} | {f(v, 'mae_raw_rad')} | {f(v, 'mean_mae_rad')} | {v.get('images')} |"
                for v in val]
    else:
        head = f"| step | {kind.upper()} aligned MAE (rad) | raw MAE (rad) | images |\n|---|---|---|---|"
        rows = [f"| {v.get('step')} | {f(v, 'mae_rad')} | {f(v, 'mae_raw_rad')} | {v.get('images')} |" for v in val]
    return "\n".join([head, *(rows or ["| - |"])])


def hardware_line(card: dict) -> str:
    """What trained the model, from its card (runs record it since 2026-12-06), else the CPU the
    shipped models were trained on, where the export runs."""
    hw = card.get("provenance", {}).get("hardware")
    if not hw:
        return (f"{platform.processor() or platform.machine()}, 2 CPU cores, no GPU (threads and the jobs "
                "sharing the cores: see the notes below)")
    return (f"{hw['processes']} x {hw['name']} ({hw['device']}, {hw['precision']}), {hw['cpu_threads']} CPU "
            f"threads per process of {hw['cpu_count']} cores")


CHOSEN = {"best": "best validation MAE during training", "last": "the last step; see the notes for the choice"}


def model_card(name: str, card: dict, summary: dict, size_bytes: int, checkpoint: str = "best",
               family: str | None = None) -> str:
    family, kind = family or split_name(name)[0], split_name(name)[1]
    title, intro = KINDS[kind]
    cfg = summary["config"]
    data = cfg.get("data", {}).get("description", {})
    model = card["model"]
    n_params = sum(p.numel() for p in _params(card))
    train_data = [dataset_summary(f) for f in data["data"].split(",")] if data.get("data") else []
    val_data = [dataset_summary(f) for f in data["val"].split(",")] if data.get("val") else []
    n_train = sum(d.get("n") or 0 for d in train_data) or "?"
    steps, batch = summary["steps"], cfg.get("data", {}).get("batch_size")
    kinds_env = "" if kind == "zmd" else f"KINDS={kind} "
    fam_var = family.replace("-", "_")
    for var, value, usual in (("CROP", data.get("crop"), 64), ("BATCH", batch, 8)):
        kinds_env += f"{var}_{fam_var}={value} " if value not in (None, usual) else ""
    if kind == "zmd" and cfg.get("seed") not in (None, 2 if family == "default" else 3):  # the script's seeds
        kinds_env += f"SEED_{fam_var}={cfg['seed']} "
    sized = re.fullmatch(r"data/default-train-(\d+)(?:-s(\d+))?(?:-(dl))?", data.get("data", ""))
    if family == "default" and sized:  # the SIZE_default sets, DATASEED_default for a fresh one, MIX_default
        kinds_env += f"SIZE_default={sized[1]} " + (f"DATASEED_default={sized[2]} " if sized[2] else "")
        kinds_env += f"MIX_default={sized[3]} " if sized[3] else ""
    kinds_env += f"SHIFT_{fam_var}={data['channel_shift']:g} " if data.get("channel_shift") else ""
    if data.get("channel_shift") and data.get("channel_shift_prob", 0.5) != 0.5:
        kinds_env += f"SHIFTPROB_{fam_var}={data['channel_shift_prob']:g} "
    lr = cfg.get("optim", {}).get("lr")
    if cfg.get("init_from") and lr is not None and abs(lr - 3e-4) > 1e-12:  # the script's later-stage LR
        kinds_env += f"LR_{fam_var}={lr:g} "
    return f"""# Model card: `{name}` ({title})

{intro} Output: phase in
radians at the reference wavelength of the `{family}` family's base microscope.

## Use
```python
chromaqpi.reconstruct(images, chromaqpi.Microscope.from_preset("{card['microscope_preset']}"), method="{kind}",
                      model="{name}", steps={card_steps(card)}, samples=1)
```

## Data
- training set(s): {_datasets_md(train_data)}
- validation set(s): {_datasets_md(val_data)}
- microscope family (domain randomisation, see `chromaqpi.datasets.randomize`): `{family}`;
  inference warns outside this envelope: `{json.dumps(card['microscope'])}`
- input normalisation: `{card.get('input_normalisation')}`; training crops {data.get('crop')} px with
  the dihedral augmentations the physics allows{_shift_note(data)}.

## Configuration
- {n_params / 1e6:.2f} M parameters; {model_config_lines(kind, model, cfg)}
- AdamW lr {cfg.get('optim', {}).get('lr')}, {cfg.get('schedule', {}).get('lr_schedule')} schedule,
  EMA {cfg.get('optim', {}).get('ema_decay')}, batch {batch}, {steps} steps, seed {cfg.get('seed')}.
- weights: fp16 safetensors, {size_bytes / 2**20:.1f} MiB, sha256 `{card['weights']['sha256']}`
  (verified at load).

## Training
- hardware: {hardware_line(card)}; {summary['samples_per_s']:.1f} samples/s at the end, about
  {summary['hours']:.1f} h of training (from the logged throughput).
- command: `{summary['command'] or f"{kinds_env}STEPS_{family.replace('-', '_')}={cfg.get('schedule', {}).get('steps')} FAMILIES={family} bash scripts/train_shipped.sh"}`
  (builds the datasets, then trains), then `python scripts/export_shipped.py {'--checkpoint last ' if checkpoint == 'last' else ''}{name}`.
- exported weights: the EMA at step {card.get('provenance', {}).get('step', '?')} ({CHOSEN[checkpoint]}).
{summary['notes']}
- on GPUs: `{'' if kind == 'zmd' else f'KIND={kind} '}FAMILY={family} NPROC=N bash scripts/train_gpu.sh` (large datasets, torchrun DDP, bf16; a
  model of at most 25 MiB in fp16, so that it can ship; README, "Training on GPUs").

## Validation (held-out validation shards, EMA weights, one 10-step DDIM sample)
{validation_table(kind, summary["val"])}

Test-set metrics for every method are in `benchmarks/results/accuracy.md`.

## Limitations
Trained for {steps} steps (batch {batch}) on {n_train} samples on a CPU{_stage_note(cfg)}:
a small model, far from converged.
Real microscopes outside the family envelope, stained (absorbing) samples, JPEG-compressed images and
undeclared lateral chromatic misregistration are not covered by the training data (a 2 px red/blue shift
costs the `default` ZMD 16 % in MAE, v7 as v5, although v7 saw up to 2 px in a quarter of its training samples;
1 px 4.5 %; the classical solvers at most 6.3 %: `benchmarks/results/misregistration.md`; not measured for the
paper presets). Declare it instead: `chromaqpi register` fits it from a calibration image into the microscope's
`[registration]`, and `reconstruct` maps the channels back before the model runs (declared, the same shifts
cost ZMD under 0.3 %). Measured for the `default` ZMD v7 on the family's cell scenes: a grey absorption
a = k·φ costs it 23 % at k = 0.05 and 2.5x at k = 0.1, absorbers placed independently of the phase 41 %
and 4.9x (TIE unaffected, WOTF 20 %; `benchmarks/results/absorption.md`, `absorption-independent.md`;
`reconstruct --check-data` then reports a residual many times the noise and `--absorption` maps the absorber);
a JPEG with 4:2:0 chroma 5-13 % at quality 95-75, with 4:4:4 chroma at quality >= 85 at most 2 %
(`benchmarks/results/jpeg.md`).
"""


def _shift_note(data: dict) -> str:
    if not data.get("channel_shift"):
        return ""
    prob = data.get("channel_shift_prob", 0.5)
    share = "half the samples" if prob == 0.5 else f"{100 * prob:g} % of the samples"
    return (f", and red and blue moved sideways against green by up to {data['channel_shift']:g} px in {share} "
            "(`train --channel-shift`)")


def _stage_note(cfg: dict) -> str:
    init = cfg.get("init_from")
    return f", starting from the earlier `{init}` model (its stages: the training notes)" if init else ""


def _datasets_md(summaries: list[dict]) -> str:
    return "; ".join(f"`{json.dumps(d)}`" for d in summaries) or "-"


def _params(card):
    from chromaqpi.models.registry import build_model

    return build_model(card["model"]).parameters()


def _portable_provenance(prov: dict) -> dict:
    """The run's provenance with its dataset folders relative to the repository (a shipped card must
    not carry this machine's absolute paths); folders outside it keep only their name."""
    def portable(entry: dict) -> dict:
        folder = Path(entry["folder"]).resolve()
        shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else Path(folder.name)
        return {**entry, "folder": shown.as_posix()}

    datasets = {split: [portable(e) for e in entries] if entries else entries
                for split, entries in (prov.get("datasets") or {}).items()}
    return {**prov, **({"datasets": datasets} if datasets else {})}


def export(name: str, checkpoint: str = "best", run: Path | None = None) -> None:
    family, kind = split_name(name)
    if run is not None:  # a variant model of a family (e.g. default-stained): the run's family
        if not (run / "train_config.json").is_file():
            sys.exit(f"--run {run}: no train_config.json there (a `chromaqpi train --out` folder is needed)")
        family = json.loads((run / "train_config.json").read_text())["microscope"]["family"]
    run = run or ROOT / "runs" / f"{kind}-{family}"
    src = run / "checkpoints" / checkpoint
    if not (src / "config.json").exists():
        src, checkpoint = run / "checkpoints" / "last", "last"
    card = read_card(src)
    tensors = read_weights(src / card["weights"]["file"], sha256=card["weights"].get("sha256"))
    base = resolve_ranges(family).base_microscope()
    card = {k: v for k, v in card.items() if k != "weights"}
    card["microscope"] = family_envelope(family)
    # Briefly trained noise nets can make the residual sample diverge; bound it to
    # ±4 sigma_zmd (a sampling setting, not a weight).
    if kind == "zmd":
        card["model"]["clip_residual"] = CLIP_RESIDUAL
    card["microscope_preset"] = base.name
    card["family"] = family  # a variant model's name need not be its family's
    card["provenance"] = _portable_provenance(card.get("provenance") or {})
    dst = ROOT / "src" / "chromaqpi" / "weights" / name
    dst.mkdir(parents=True, exist_ok=True)
    kept = json.loads((dst / "config.json").read_text()).get("sampling") if (dst / "config.json").exists() else None
    if kept:
        card["sampling"] = kept
    write_model_dir(dst, tensors, card, dtype=torch.float16)
    size = (dst / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"{name}: {size / 2**20:.1f} MiB exceeds the 25 MiB limit")
    card = read_card(dst)
    card["microscope_preset"] = base.name
    (dst / "MODEL_CARD.md").write_text(model_card(name, card, training_summary(run), size, checkpoint, family))
    print(f"exported {name}: {size / 2**20:.1f} MiB from {src}")
    if kept and "steps" in kept:
        record_steps(name, kept["steps"])
        print(f"{name}: kept the replaced model's {kept['steps']} DDIM steps; re-measure (bench_steps.py) and "
              "record them with --sampling-steps")
    if kept and "temperature" in kept:
        record_temperature(name, kept["temperature"])
        print(f"{name}: kept the replaced model's temperature {kept['temperature']:g}; re-measure "
              "(bench_temperature.py) and record it with --sampling-temperature")
    if kind == "zmd":
        print(f"{name}: the std map is the raw spread until calibrated (bench_uncertainty.py --calibrate, "
              "then --std-scale)")


ENVELOPE_LINE = "  inference warns outside this envelope: `"


STEPS_NOTE = "Recommended DDIM steps: "
USE_LINE = re.compile(r"(model=\"[^\"]+\", steps=)\d+(, samples=1\))")


def record_steps(name: str, steps: int) -> None:
    """Record the DDIM steps a shipped model recommends (config.json ``sampling.steps``, read when a
    caller passes none, and its card's usage line). Choose them on validation images
    (``benchmarks/bench_steps.py``) and say how in the card's notes; an export keeps the replaced
    model's count and asks for it to be re-measured."""
    dst = ROOT / "src" / "chromaqpi" / "weights" / name
    config = json.loads((dst / "config.json").read_text())
    config["sampling"] = {**config.get("sampling", {}), "steps": int(steps)}
    card_md, n = USE_LINE.subn(rf"\g<1>{int(steps)}\g<2>", (dst / "MODEL_CARD.md").read_text())
    if n != 1:
        sys.exit(f"{name}: MODEL_CARD.md has {n} usage lines, expected 1")
    note = (f"{STEPS_NOTE}{int(steps)} (`sampling.steps` in config.json, used when no `steps` is given), chosen on "
            f"validation images: `{_results_file(name, 'steps')}`.\n")
    atomic_write_json(dst / "config.json", config)
    atomic_write_bytes(dst / "MODEL_CARD.md", _put_note(card_md, STEPS_NOTE, note).encode())
    print(f"{name}: recommends {int(steps)} DDIM steps")


def _put_note(card_md: str, prefix: str, note: str) -> str:
    """The card with its line starting with ``prefix`` replaced by ``note``; without one, ``note`` goes
    under the sampling notes that follow the usage block (after the block's fence and the notes there)."""
    lines = card_md.splitlines(keepends=True)
    old = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if old:
        lines[old[0]] = note
    else:
        at = next(i for i, line in enumerate(lines) if USE_LINE.search(line)) + 2  # after the closing fence
        while at < len(lines) and lines[at].startswith((STEPS_NOTE, TEMPERATURE_NOTE, STD_SCALE_NOTE)):
            at += 1  # after the other sampling notes
        lines.insert(at, note)
    return "".join(lines)


TEMPERATURE_NOTE = "Sampling temperature of a single draw: "


def record_temperature(name: str, temperature: float) -> None:
    """Record the temperature a shipped model's single draw uses (config.json ``sampling.temperature``,
    read when a caller passes none and asks for one sample; N > 1 draws stay at 1) and say so in its card,
    under the steps line. Choose it on validation images (``benchmarks/bench_temperature.py``)."""
    note = (f"{TEMPERATURE_NOTE}{float(temperature):g} (`sampling.temperature` in config.json: the chain's noise "
            "scaled by it, used when no `temperature` is given and one sample is drawn; `samples` > 1 draws at 1 "
            "so that their spread is the posterior's), chosen on validation images: "
            f"`{_results_file(name, 'temperature')}`.\n")
    _record(name, "sampling", {"temperature": float(temperature)}, TEMPERATURE_NOTE, note)
    print(f"{name}: single draws at temperature {float(temperature):g}")


def _results_file(name: str, stem: str) -> str:
    """Where a sampling setting of a shipped model was chosen: ``benchmarks/results/STEM.md``, or for a
    family's variant model (e.g. default-stained, run with ``--suffix=-NAME``) ``STEM-NAME.md``."""
    config = json.loads((ROOT / "src" / "chromaqpi" / "weights" / name / "config.json").read_text())
    variant = config.get("family", name) != name
    return f"benchmarks/results/{stem}{'-' + name if variant else ''}.md"


def _record(name: str, section: str, values: dict, prefix: str, note: str) -> None:
    """Merge ``values`` into a shipped model's config.json ``section`` and put ``note`` (the card line
    starting with ``prefix``) into its MODEL_CARD.md."""
    dst = ROOT / "src" / "chromaqpi" / "weights" / name
    config = json.loads((dst / "config.json").read_text())
    config[section] = {**config.get(section, {}), **values}
    card_md = _put_note((dst / "MODEL_CARD.md").read_text(), prefix, note)
    atomic_write_json(dst / "config.json", config)
    atomic_write_bytes(dst / "MODEL_CARD.md", card_md.encode())


STD_SCALE_NOTE = "Uncertainty calibration: "


def record_std_scale(name: str, scale: float, draws: int = 8) -> None:
    """Record the factor that turns the spread of ZMD draws into a one-sigma error (config.json
    ``uncertainty.scale``, applied by ``return_std`` for draws at temperature 1) and say so in the card.
    Fit it on validation images (``benchmarks/bench_uncertainty.py --calibrate``)."""
    values = {"scale": float(scale), "draws": int(draws),
              "fitted": f"one-sigma coverage 0.6827 of {int(draws)} draws at temperature 1 on validation images: "
                        f"{_results_file(name, 'uncertainty-calibration')}"}
    note = (f"{STD_SCALE_NOTE}the std of `samples` > 1 draws is multiplied by {float(scale):g} (`uncertainty.scale` "
            "in config.json; `calibrated_std=False` or `--raw-std` gives the raw spread), so that it covers 68 % of "
            f"the pixels' errors on validation images ({int(draws)} draws at temperature 1, pooled over the model's "
            "validation folders; other draw counts get the Student-t small-sample factor, "
            f"`registry.draws_correction`): `{_results_file(name, 'uncertainty-calibration')}`; measured on the test "
            "sets in `benchmarks/results/uncertainty.md`. Not applied to draws at another temperature or "
            "followed by `refine`.\n")
    _record(name, "uncertainty", values, STD_SCALE_NOTE, note)
    print(f"{name}: std scale {float(scale):g}")


def refresh_envelope(name: str) -> None:
    """Rewrite a shipped model's ``microscope`` envelope (config.json and its card line) from
    its family's current :func:`family_envelope`; the weights and everything else stay."""
    dst = ROOT / "src" / "chromaqpi" / "weights" / name
    config = json.loads((dst / "config.json").read_text())
    family = config.get("family") or split_name(name)[0]
    config["microscope"] = family_envelope(family)
    card_md = (dst / "MODEL_CARD.md").read_text().splitlines(keepends=True)
    lines = [i for i, line in enumerate(card_md) if line.startswith(ENVELOPE_LINE)]
    if len(lines) != 1:
        sys.exit(f"{name}: MODEL_CARD.md has {len(lines)} envelope lines, expected 1")
    card_md[lines[0]] = f"{ENVELOPE_LINE}{json.dumps(config['microscope'])}`\n"
    atomic_write_json(dst / "config.json", config)
    atomic_write_bytes(dst / "MODEL_CARD.md", "".join(card_md).encode())
    print(f"{name}: envelope {json.dumps(config['microscope'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", choices=tuple(CHOSEN), default="best", help="which run checkpoint to ship")
    parser.add_argument("--refresh-envelope", action="store_true",
                        help="only rewrite the shipped models' microscope envelope (no run needed)")
    parser.add_argument("--sampling-steps", type=int, metavar="K",
                        help="only record K as the shipped models' recommended DDIM steps (no run needed)")
    parser.add_argument("--sampling-temperature", type=float, metavar="T",
                        help="only record T as the shipped models' single-draw temperature (no run needed)")
    parser.add_argument("--std-scale", type=float, metavar="S",
                        help="only record S as the models' std calibration scale (no run needed)")
    parser.add_argument("--std-draws", type=int, default=8, metavar="N",
                        help="the draws per image --std-scale was fitted with (default 8)")
    parser.add_argument("--run", type=Path, metavar="DIR",
                        help="export this run folder (default: runs/KIND-FAMILY), e.g. a variant model of a family")
    parser.add_argument("names", nargs="*", help="default: default paper-2shot paper-rgb (--std-scale: required)")
    args = parser.parse_args()
    if args.sampling_steps is not None and args.sampling_steps < 1:
        sys.exit(f"--sampling-steps must be >= 1, got {args.sampling_steps}")
    if args.sampling_temperature is not None and not is_temperature(args.sampling_temperature):
        sys.exit(f"--sampling-temperature must be a finite number >= 0, got {args.sampling_temperature}")
    if args.std_scale is not None:
        if not (is_temperature(args.std_scale) and args.std_scale > 0):
            sys.exit(f"--std-scale must be a finite number > 0, got {args.std_scale}")
        if not args.names or any(split_name(n)[1] != "zmd" for n in args.names):
            sys.exit("--std-scale needs the ZMD models it was fitted for, named (e.g. --std-scale 4.377 default)")
    for fam in args.names or ["default", "paper-2shot", "paper-rgb"]:
        if args.std_scale is not None:
            record_std_scale(fam, args.std_scale, args.std_draws)
        if args.sampling_steps is not None or args.sampling_temperature is not None:
            if args.sampling_steps is not None:
                record_steps(fam, args.sampling_steps)
            if args.sampling_temperature is not None:
                record_temperature(fam, args.sampling_temperature)
        elif args.std_scale is None:
            refresh_envelope(fam) if args.refresh_envelope else export(fam, args.checkpoint, args.run)
