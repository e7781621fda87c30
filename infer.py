"""Turn sketches into photos with a trained generator.

    # -> out/sketch.png, newest models/*/generator.pt (named on stderr)
    python infer.py sketch.jpg
    python infer.py sketches/ more.png -o results --checkpoint models/edges2shoes/generator.pt
    # deterministic: no dropout, running statistics
    python infer.py sketch.jpg --eval
    python infer.py sketch.jpg --pretrained edges2shoes  # the authors' weights, downloaded once
    python infer.py sketches/ --precision fp32           # no bf16, even where the tuner picks it
    # a file of python -m tools.export, run by onnxruntime
    python infer.py sketch.jpg --onnx models/NAME/generator.paper.onnx
    # the sketch as it is: padded to square, resized
    python infer.py sketch.jpg --no-fit
    python infer.py wide.png --native                  # run at the sketch's own resolution
    python infer.py photo.jpg --save_prepared prepared/  # + what the generator was given
    # a model trained with --hints: colour where painted, or one colour inside the drawing
    python infer.py sketch.png --hints painted.png
    python infer.py sketch.png --color "#b22222"

Inputs: a plain sketch of any size (pen, pencil, marker or coloured ink on paper, a scan or a photo
of it: PNG, JPEG, BMP, WebP or TIFF, 8 or 16 bits a channel), or an edges2shoes-style pair twice as
wide as high, of which the input half is used.
One PNG per input, of the input's own size (for a pair: of its input half), named after it:
OUT/NAME.png, and NAME-2.png, NAME-3.png... for inputs that share a name, in the order given.
Nothing is lost: a run whose output would replace an input is refused, and the output folder is
tried for writing before any work.
Fitting (default for plain sketches, not pairs): the drawing is found on the canvas (the strokes
that stand out from the paper, specks ignored; see sketch.py), cropped with the margin edges2shoes
shoes have, padded to square, redrawn with one-pixel centre lines like the training edges, and the
photo goes back at the drawing's place and size on white. A sketch with no drawing to find is named
on stderr and made unfitted. --save_prepared DIR shows what the generator was given.
--no-fit: the whole sketch is padded with white to a square and resized to the model's
resolution; the padding is cropped from the photo, which is resized back to the sketch's size.
--native: no padding and no resizing to the training size: the fully convolutional generator runs at
the sketch's resolution rounded to a multiple of 2**num_downs. The model learned one scale, so at
another its innermost layers see a different share of the shoe: expect other textures, blotches or
repeated parts on large inputs; the training size is the one it was judged at.
By default the generator runs as in the paper at test time (dropout on, each image normalized by
its own statistics), so each seed draws a slightly different photo: a photo depends on its sketch
and --seed alone, not on the other inputs or the batch. --eval makes it deterministic. Same-size
inputs run --batch_size at a time in either mode, the way tune.py picks for this machine (a job
big enough to pay for the tuning is timed once, the winner cached; --precision and --tune
override).
A file that cannot be read is named on its own line on stderr; the others are still made, and the
exit code is 2 at the end.
Colour hints (a model trained with --hints, hints.py): --hints FILE is an image of the sketch's
size (for a pair: its input half's) whose painted pixels (non-transparent ones, or non-white ones
where it has no alpha) give the colour there; --color puts one hint patch inside the drawing, away
from its strokes. Hints go through the sketch's own fitting, padding and resizing; --save_prepared
shows them over the sketch.
"""

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

if __name__ == "__main__":
    # Read once when torch loads OpenMP: idle threads sleep instead of spinning. On a CPU shared
    # with other processes a spinning thread starves the working one: the 2-thread generator ran 2×
    # (256×256) to 70× (64×64) slower (bench.py infer). An OMP_WAIT_POLICY set in the environment
    # wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from config import (HINT_CHANNELS, SWITCH, Config, add_device_flag, first_line,  # noqa: E402
                    memory_short, pick_device)
from dataset import list_images, to_image  # noqa: E402
from generator import build_generator, draw_masks  # noqa: E402
from hints import (colour_patch, hints_from_image, overlay, parse_colour,  # noqa: E402
                   patch_side, read_hints_image)
from pretrained import PRETRAINED, pretrained_checkpoint  # noqa: E402
from save import load_generator, size_text  # noqa: E402
from sketch import prepare_sketch, put_back  # noqa: E402
from tune import PRECISIONS, Tuner  # noqa: E402


# what --eval costs, measured (README, "Inference modes")
EVAL_HELP = ("eval mode: no dropout, running statistics; deterministic, but on the small CPU "
             "recipe model L1 0.251 against paper mode's 0.189 on 100 val pairs, unless the "
             "statistics are recomputed by tools.precise_bn (0.187)")


def find_checkpoint(models_dir: str = "models") -> Path:
    """The most recently written generator.pt under models/, so infer.py works right after
    training."""
    found = sorted(Path(models_dir).glob("*/generator.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{models_dir}/: no */generator.pt; train first "
                                "(python train.py --demo) "
                                f"or pass --checkpoint")
    return found[-1]


def add_checkpoint_flags(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--checkpoint FILE or --pretrained NAME (one of them, or neither: the newest trained run)."""
    which = parser.add_mutually_exclusive_group(required=required)
    default = "" if required else " (default: newest models/*/generator.pt, named on stderr)"
    which.add_argument("--checkpoint", help=f"generator.pt or last.pt of a run{default}")
    which.add_argument("--pretrained", choices=PRETRAINED, metavar="NAME",
                       help=f"the authors' weights, fetched once: {', '.join(PRETRAINED)}")


def chosen_checkpoint(args: argparse.Namespace) -> Path:
    """The file add_checkpoint_flags' flags name: fetched and converted for --pretrained; the
    newest trained run's, said on stderr, for neither."""
    if args.pretrained:
        return pretrained_checkpoint(args.pretrained)
    if args.checkpoint:
        return Path(args.checkpoint)
    newest = find_checkpoint()
    # a silent guess could load another run than the user meant
    print(f"checkpoint: {newest} (the newest models/*/generator.pt; --checkpoint picks another)",
          file=sys.stderr)
    return newest


def add_tuning_flags(parser: argparse.ArgumentParser) -> None:
    """--precision and --tune, for infer.py, the app and tools.evaluate."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: the tuner's pick (bf16 only on a CPU with native bf16, "
                             "and only within the stated output bound); fp32 or bf16 force it")
    parser.add_argument("--tune", **{**SWITCH, "default": None},
                        help="time the settings now and cache the winner (default: use the cache, "
                             "tune when the job is big enough to pay for it); --no-tune: defaults")


def collect_inputs(paths) -> tuple:
    """(files, problems): files as given, folders expanded to the images directly inside them; one
    'path: problem' for each path that names nothing usable."""
    files, problems = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = list_images(path, required=False)
            if not found:
                problems.append(f"{path}: no images in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        elif path.name.lower() in ("true", "false"):  # an old `--fit false` leaves its value here
            problems.append(f"{path}: no such file or folder (a boolean is a flag alone: "
                            "--fit / --no-fit)")
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def output_paths(files, out_dir: Path) -> dict:
    """{input: out_dir/STEM.png}; inputs that share a stem (a/shoe.png, b/shoe.png, b/shoe.jpg) get
    STEM-2.png, STEM-3.png... in the order given, so no photo replaces another."""
    targets, taken = {}, set()
    for path in files:  # names compared case-blind: one file on macOS and Windows
        if f"{path.stem}.png".casefold() not in taken:
            targets[path] = out_dir / f"{path.stem}.png"
            taken.add(targets[path].name.casefold())
    for path in files:
        k = 2
        while path not in targets:
            name = f"{path.stem}-{k}.png"
            if name.casefold() not in taken:
                targets[path] = out_dir / name
                taken.add(name.casefold())
            k += 1
    return {path: targets[path] for path in files}


def overwritten_input(targets: dict) -> str:
    """'INPUT' if an output would be written over an input file (the same path, a link to it, or
    the same file by another name), else ''."""
    def identity(path):
        stat = path.stat()  # through links: a symlink to an input is that input
        return stat.st_dev, stat.st_ino
    inputs = {identity(path): path for path in targets}
    for target in targets.values():
        if target.exists() and identity(target) in inputs:
            return str(inputs[identity(target)])
    return ""


def check_writable(folder: Path) -> None:
    """Make folder and write a probe file in it: an OSError now, not after every photo is made."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".infer-probe-"):
        pass


class OnnxGenerator:
    """A generator exported by tools.export, run by onnxruntime's CPU provider: its config, mode
    and dropout rates come from the file; onnx(sketch, seeds) -> photos, the masks drawn as paper
    mode draws them (the same seed, the same photo)."""

    def __init__(self, path):
        try:
            import onnxruntime
        except ImportError:
            raise ValueError("--onnx needs onnxruntime (pip install onnxruntime)") from None
        try:
            self.session = onnxruntime.InferenceSession(str(path),
                                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # missing, truncated, not ONNX
            raise ValueError(f"{path}: not a loadable ONNX file ({first_line(e, 100)})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "pix2pix_config" not in meta:
            raise ValueError(f"{path}: not written by tools.export (no pix2pix metadata)")
        self.cfg = Config.from_dict(json.loads(meta["pix2pix_config"]))
        self.paper = meta["pix2pix_mode"] == "paper"
        self.rates = json.loads(meta["pix2pix_dropout"])
        inputs = self.session.get_inputs()  # sketch, then one mask per dropout layer
        self.names, self.mask_shapes = [i.name for i in inputs], [i.shape[1:] for i in inputs[1:]]

    def __call__(self, sketch: torch.Tensor, seeds) -> torch.Tensor:
        tensors = [sketch, *(draw_masks(self.mask_shapes, self.rates, seeds) if self.paper else [])]
        feeds = {name: t.numpy() for name, t in zip(self.names, tensors)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


class OpOutputs(TorchDispatchMode):
    """Sums the bytes of every tensor the ops under it make (views and in-place results aside)."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(result.alias_info for result in func._schema.returns):
            self.nbytes += sum(t.numel() * t.element_size() for t in tree_flatten(out)[0]
                               if isinstance(t, torch.Tensor))
        return out


def activation_bytes(cfg: Config, shape) -> int:
    """Bytes of every tensor the generator makes for one (C, H, W) sketch, all counted as if alive
    at once, from a dry run on the meta device (no memory): a bound on what generating it needs
    beyond the weights (measured peaks: half of it, tiny and full-size UNets, 1024-2048 px)."""
    with torch.device("meta"):
        generator = build_generator(cfg).eval()
    counter = OpOutputs()
    channels = 3 + (HINT_CHANNELS if cfg.hints else 0)  # the sketch, and its colour hints
    with torch.no_grad(), counter:
        generator(torch.empty(1, channels, *shape[1:], device="meta"))
    return counter.nbytes


def batch_limit(nbytes: int, batch_size: int) -> int:
    """How many inputs needing nbytes each to generate at once, at most batch_size: the most that
    fit in the memory available (config.memory_short), 0 if not even one does."""
    while batch_size and memory_short(nbytes * batch_size) is not None:
        batch_size //= 2
    return batch_size


def write_image(image, target: Path) -> None:
    """Save a PNG at target by renaming a new file over it: a link found at target is replaced
    itself, never written through, so nothing outside target's folder changes."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # a new file, umask's mode
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        link = os.readlink(target) if target.is_symlink() else None
        os.replace(tmp, target)  # rename(2) replaces the name, a link included, not its target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if link is not None:
        print(f"infer.py: {target} was a link (to {link}); the link is replaced, what it points "
              f"to is left as it was", file=sys.stderr)


def hint_channels(prepared, cfg: Config, hints_image=None, colour=None, name: str = "hints"):
    """The colour hints (4, H, W) of one prepared input for a model trained with them: the painted
    pixels of hints_image ((colours, painted) of hints.read_hints_image, at the input's size) put
    through the input's fitting, and one patch of colour (r, g, b) inside the drawing over them;
    zeros for neither. None for a model without hint channels; ValueError for a misfit."""
    if not cfg.hints:
        return None
    height, width = prepared.sketch.shape[1:]
    hints = torch.zeros(HINT_CHANNELS, height, width)
    if hints_image is not None:
        colours, painted = hints_image
        if painted.shape[::-1] != tuple(prepared.size):
            raise ValueError(f"{name} is {painted.shape[1]}×{painted.shape[0]}, the sketch "
                             f"{prepared.size[0]}×{prepared.size[1]}: the hints must be the "
                             "sketch's size (for a pair: its input half's)")
        hints = hints_from_image(colours, painted, prepared.region, (width, height))
    if colour is not None:
        patch = colour_patch(prepared.sketch, colour, patch_side(cfg.hint_patch, cfg.image_size))
        hints = torch.where(patch[3:] > 0, patch, hints)
    return hints


def generate(tuner: Tuner, batch: list, seed: int = 0) -> list:
    """Photos (PIL, at the inputs' sizes) of a list of Prepared inputs that share one tensor size;
    in paper mode every image's dropout noise is seeded by seed."""
    sketches = torch.stack([prepared.sketch if prepared.hints is None else  # (B, 3 or 7, H, W)
                            torch.cat([prepared.sketch, prepared.hints]) for prepared in batch])
    fake_photos = tuner(sketches, [seed] * len(batch))
    return [put_back(to_image(photo), prepared) for photo, prepared in zip(fake_photos, batch)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="sketch images or folders of them")
    parser.add_argument("-o", "--out", default="out",
                        help="folder for the photos, one INPUT_NAME.png each; inputs that share a "
                             "name get NAME-2.png, NAME-3.png... in the order given; a run that "
                             "would write over an input is refused")
    add_checkpoint_flags(parser)
    parser.add_argument("--eval", **SWITCH, help=EVAL_HELP)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the dropout noise in paper mode")
    parser.add_argument("--fit", **{**SWITCH, "default": None},
                        help="crop a plain sketch to its drawing, "
                             "redraw its lines like the training edges, "
                             "put the photo back in place (default: on; off with --native)")
    parser.add_argument("--native", **SWITCH,
                        help="run at the sketch's own resolution "
                             "rounded to a multiple of 2**num_downs, "
                             "not at the training size (another scale than trained: other quality)")
    parser.add_argument("--save_prepared", metavar="DIR",
                        help="also write what the generator was given (the fitted or padded "
                             "sketch, at the model's size) to DIR/NAME.png")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="same-size inputs per generator call (either mode: paper mode "
                             "normalizes each image by its own statistics)")
    add_device_flag(parser)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0: torch's default, one per core, or the tuner's pick)")
    add_tuning_flags(parser)
    parser.add_argument("--onnx", help="run this file of tools.export with onnxruntime instead of "
                                       "a checkpoint (its mode must match --eval)")
    parser.add_argument("--hints", metavar="FILE",
                        help="colour hints for a model trained with --hints: an image of the "
                             "sketch's size whose painted pixels (non-transparent, or non-white "
                             "without alpha) give the colour there")
    parser.add_argument("--color", metavar="COLOUR",
                        help="one colour hint inside the drawing (#b22222, #f00, rgb(178, 34, 34), "
                             "hsl(0, 68%%, 42%%) or a name such as red; opaque), for a model "
                             "trained with --hints")
    args = parser.parse_args(argv)
    try:
        colour = parse_colour(args.color) if args.color is not None else None
    except ValueError as e:
        parser.error(f"--color: {e}")
    if args.onnx and (args.checkpoint or args.pretrained or args.native):
        parser.error("--onnx runs an exported file at its training size: no --checkpoint, "
                     "--pretrained or --native")
    if args.native and args.fit:
        parser.error("--native runs the whole sketch at its own size; it excludes --fit")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    if not args.out.strip():
        parser.error("-o/--out: an empty folder name (-o . is the current folder)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    fit, paper = args.fit is not False and not args.native, not args.eval
    out_dir = Path(args.out)
    files, problems = collect_inputs(args.inputs)
    once = {}  # a file named twice (sketches/ sketches/a.png) is made once
    for path in files:
        once.setdefault(path.resolve(), path)
    files = list(once.values())
    targets = output_paths(files, out_dir)
    prepared_dir = Path(args.save_prepared) if args.save_prepared else None
    if prepared_dir and prepared_dir.resolve() == out_dir.resolve():
        parser.error("--save_prepared: give another folder than -o (the photos go there under "
                     "the same names)")
    prepared_targets = {path: prepared_dir / target.name
                        for path, target in targets.items()} if prepared_dir else {}
    # nothing lost: checked before any download, load or generation
    for kind, option, paths in (("photo", "-o", targets),
                                ("prepared sketch", "--save_prepared", prepared_targets)):
        overwritten = overwritten_input(paths)
        if overwritten:
            print(f"infer.py: error: {overwritten}: its {kind} would be written over an input; "
                  f"choose another {option} (outputs never replace inputs)", file=sys.stderr)
            return 2
    for folder in (out_dir, prepared_dir) if prepared_dir else (out_dir,):
        try:
            check_writable(folder)
        except OSError as e:
            print(f"infer.py: error: {folder}: cannot write there ({e.strerror or e})",
                  file=sys.stderr)
            return 2
    try:
        device = pick_device(args.device)
        if args.onnx:
            onnx_generator = OnnxGenerator(args.onnx)
            cfg = onnx_generator.cfg
            if onnx_generator.paper != paper:
                raise ValueError(f"{args.onnx}: exported in {'paper' if not paper else 'eval'} "
                                 f"mode; export the other (python -m tools.export CHECKPOINT "
                                 f"--mode {'paper' if paper else 'eval'})")
        else:
            source = chosen_checkpoint(args)
            generator, cfg = load_generator(source)
            generator.to(device)
        if (args.hints or colour is not None) and not cfg.hints:
            raise ValueError(f"{args.onnx or source}: this model was trained without colour hints "
                             "(no hint channels); --hints and --color need one trained with "
                             "--hints")
        hints_image = read_hints_image(args.hints) if args.hints else None
    except (OSError, ValueError) as e:
        print(f"infer.py: error: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"infer.py: error: {problem}", file=sys.stderr)
    failed, written = len(problems), 0
    # the fastest correct setting for this machine, model and batch (tune.py)
    tuner = onnx_generator if args.onnx else Tuner(
        generator, paper=paper, device=device, precision=args.precision, n_images=len(files),
        tune=args.tune, tune_threads=args.threads == 0)
    batch_size = args.batch_size
    pending = {}  # tensor shape -> [(path, Prepared)], run when batch_size have gathered

    def run(group):
        nonlocal failed, written
        try:
            photos = generate(tuner, [prepared for _, prepared in group], args.seed)
        except (RuntimeError, MemoryError, ValueError) as e:  # out of memory included
            if len(group) > 1:  # one at a time: only an input that fails alone is lost
                for item in group:
                    run([item])
                return
            print(f"infer.py: error: {group[0][0]}: generating it failed: {first_line(e)}",
                  file=sys.stderr)
            failed += 1
            return
        for (path, _), photo in zip(group, photos):
            target = targets[path]
            try:
                write_image(photo, target)
            except OSError as e:
                print(f"infer.py: error: {target}: cannot write ({e})", file=sys.stderr)
                failed += 1
                continue
            written += 1
            print(f"{path} -> {target}")

    multiple = 2**cfg.num_downs if args.native else 0
    needs, limits = {}, {}  # per tensor shape: bytes to generate one, inputs per call
    for path in files:
        try:
            prepared = prepare_sketch(path, cfg.image_size, cfg.direction, fit=fit,
                                      native_multiple=multiple)
        except (OSError, ValueError, MemoryError) as e:
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            print(f"infer.py: error: {message}", file=sys.stderr)
            failed += 1
            continue
        try:
            prepared.hints = hint_channels(prepared, cfg, hints_image, colour, args.hints)
        except ValueError as e:
            print(f"infer.py: error: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        if prepared.blank:  # not an error: the photo is still made, from the whole sketch
            print(f"infer.py: {path}: no drawing found (no strokes stand out from the paper); "
                  "made from the whole sketch, unfitted", file=sys.stderr)
        shape = tuple(prepared.sketch.shape)
        if shape not in needs:
            needs[shape] = activation_bytes(cfg, shape)
        if shape not in pending:  # inputs per call: as many as fit in memory now
            limits[shape] = batch_limit(needs[shape], batch_size)
        if not limits[shape]:
            print(f"infer.py: error: {path}: generating it at {shape[2]}×{shape[1]} takes up to "
                  f"{size_text(needs[shape])} of memory, more than the "
                  f"{size_text(memory_short(needs[shape]) or 0)} available"
                  + (" (without --native it runs at the training size)" if args.native else ""),
                  file=sys.stderr)
            failed += 1
            continue
        if prepared_dir:
            target = prepared_targets[path]
            try:
                write_image(to_image(prepared.sketch if prepared.hints is None
                                     else overlay(prepared.sketch, prepared.hints)),
                            target)
            except OSError as e:
                print(f"infer.py: error: {target}: cannot write ({e})", file=sys.stderr)
                failed += 1
        group = pending.setdefault(shape, [])
        group.append((path, prepared))
        if len(group) >= limits[shape]:
            run(pending.pop(shape))
    for group in pending.values():
        run(group)
    if failed:  # the bad ones are named on stderr, one line each; the count goes with the outputs
        made = f"{written} written to {out_dir}" if written else "nothing was written"
        print(f"{failed} of {len(files) + len(problems)} inputs failed; {made}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
