"""Turn sketches into photos with a trained generator.

    python infer.py sketch.jpg        # -> out/sketch.png, newest models/*/generator.pt (on stderr)
    python infer.py sketches/ more.png -o results --checkpoint models/edges2shoes/generator.pt
    python infer.py sketch.jpg --eval                    # deterministic: no dropout
    python infer.py sketch.jpg --pretrained edges2shoes  # the authors' weights, downloaded once
    python infer.py sketches/ --precision fp32           # no bf16, even where the tuner picks it
    python infer.py sketch.jpg --onnx models/NAME/generator.paper.onnx  # tools.export's file
    python infer.py sketch.jpg --no-fit                  # the sketch as it is: padded, resized
    python infer.py wide.png --native                    # at the sketch's own resolution
    python infer.py photo.jpg --save_prepared prepared/  # + what the generator was given
    python infer.py sketch.png --hints painted.png       # colour where painted (--hints model)
    python infer.py sketch.png --color "#b22222"       # the shoe that colour (--no-transfer: G's)

Inputs: plain sketches of any size (pen, pencil, marker or ink on paper, scanned or photographed;
PNG, JPEG, BMP, WebP or TIFF, 8 or 16 bits a channel) or edges2shoes-style pairs, whose input half
is used. One PNG per input, of its size: OUT/NAME.png (NAME-2.png, ... for inputs that share a
name, in the order given); a run whose output would replace an input is refused, and the output
folder is tried before any work. A plain sketch's drawing is
found, cropped with the shoes' margin, redrawn with one-pixel lines like the training edges, and its
photo put back at its place (docs/sketches.md); --no-fit pads the whole sketch to a square instead;
--native runs it at its own resolution rounded to a multiple of 2**num_downs (another scale than
trained: other textures). The generator runs as in the paper at test time (dropout on, each image's
own statistics), so a photo depends on its sketch and --seed alone; --eval is deterministic.
Same-size inputs run --batch_size at a time, as tune.py picks for this machine. A file that cannot
be made is named on its own line on stderr, the others are still made, and the exit code is 2.
Colour hints (hints.py): --hints FILE paints them (its non-transparent, or non-white, pixels) at the
sketch's size; --color puts one patch inside the drawing; then the generated shoe is moved to their
colour (hints.transfer_colour, in the model's frame before the photo is put back; --no-transfer:
G's own photo).
"""

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import NamedTuple

if __name__ == "__main__":
    # read once when torch loads OpenMP: idle threads sleep instead of spinning, which on a shared
    # CPU starved the working one (2× to 70× slower: tools.bench infer); the environment's wins
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from config import (HINT_CHANNELS, SWITCH, Config, add_device_flag, first_line,  # noqa: E402
                    memory_short, pick_device)
from dataset import list_images, to_image  # noqa: E402
from generator import build_generator, draw_masks  # noqa: E402
from hints import (colour_patch, hints_from_image, overlay, parse_colour,  # noqa: E402
                   patch_side, read_hints_image, transfer_colour)
from pretrained import PRETRAINED, pretrained_checkpoint  # noqa: E402
from save import load_generator, size_text  # noqa: E402
from sketch import prepare_sketch, put_back  # noqa: E402
from tune import PRECISIONS, Tuner  # noqa: E402


EVAL_HELP = ("eval mode: no dropout, running statistics; deterministic, but worse than paper mode "
             "unless tools.precise_bn recomputed them (docs/reproduction.md measures it)")


def find_checkpoint(models_dir: str = "models") -> Path:
    """The most recently written generator.pt under models/, so infer.py works right after
    training."""
    found = sorted(Path(models_dir).glob("*/generator.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{models_dir}/: no */generator.pt; train first (python train.py "
                                "--demo) or pass --checkpoint")
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


def translate_prepared(runner, batch: list, seed: int = 0, transfer: bool = True) -> tuple:
    """(photos (B, 3, H, W) in [-1, 1] in the model's frame, clipped bool (B, 1, H, W)) of a list
    of Prepared inputs that share one tensor size: in paper mode every image's dropout noise is
    seeded by seed; with transfer, each photo given hints has its shoe moved to their colour
    (hints.transfer_colour), clipped marking the pixels that left the sRGB gamut (none without)."""
    sketches = torch.stack([prepared.sketch if prepared.hints is None else  # (B, 3 or 7, H, W)
                            torch.cat([prepared.sketch, prepared.hints]) for prepared in batch])
    fake_photos = runner(sketches, [seed] * len(batch)).float()
    clipped = torch.zeros_like(fake_photos[:, :1], dtype=torch.bool)
    # a model without hint channels has none to follow, nor one given none
    if transfer and any(prepared.hints is not None and prepared.hints[3].any()
                        for prepared in batch):
        given = torch.stack([prepared.hints for prepared in batch]).to(fake_photos.device)
        fake_photos, clipped = transfer_colour(fake_photos, given)
    return fake_photos, clipped


def generate(runner, batch: list, seed: int = 0, transfer: bool = True) -> list:
    """Photos (PIL, at the inputs' sizes) of a list of Prepared inputs that share one tensor size:
    translate_prepared's, each put back into its input's frame."""
    fake_photos, _ = translate_prepared(runner, batch, seed, transfer)
    return [put_back(to_image(photo), prepared) for photo, prepared in zip(fake_photos, batch)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="sketch images or folders of them")
    parser.add_argument("-o", "--out", default="out", help="folder for the photos, NAME.png each "
                        "(NAME-2.png... for inputs that share a name); never over an input")
    add_checkpoint_flags(parser)
    parser.add_argument("--eval", **SWITCH, help=EVAL_HELP)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the dropout noise in paper mode")
    parser.add_argument("--fit", **{**SWITCH, "default": None}, help="crop a plain sketch to its "
                        "drawing, redraw its lines like the training edges, put the photo back in "
                        "place (default: on; off with --native)")
    parser.add_argument("--native", **SWITCH, help="run at the sketch's own resolution rounded "
                        "to a multiple of 2**num_downs (another scale than trained: other quality)")
    parser.add_argument("--save_prepared", metavar="DIR", help="also write what the generator "
                        "was given (the fitted or padded sketch) to DIR/NAME.png")
    parser.add_argument("--batch_size", type=int, default=8, help="same-size inputs per "
                        "generator call (paper mode normalizes each image by its own statistics)")
    add_device_flag(parser)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0: torch's default, one per core, or the tuner's pick)")
    add_tuning_flags(parser)
    parser.add_argument("--onnx", help="run this file of tools.export with onnxruntime instead of "
                                       "a checkpoint (its mode must match --eval)")
    parser.add_argument("--hints", metavar="FILE", help="for a model trained with --hints: an "
                        "image of the sketch's size whose painted pixels (non-transparent, or "
                        "non-white without alpha) give the colour there")
    parser.add_argument("--color", metavar="COLOUR",
                        help="one colour hint inside the drawing (#b22222, #f00, rgb(178, 34, 34), "
                             "hsl(0, 68%%, 42%%) or a name such as red; opaque), for a model "
                             "trained with --hints")
    parser.add_argument("--transfer", **{**SWITCH, "default": True},
                        help="after G, move the shoe's colour to the hints' (hints.transfer_colour"
                             ": shading and texture kept) where --hints or --color gives any; "
                             "--no-transfer: G's own photo (default: on)")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, a usage error refused as argparse refuses one (exit 2); args.colour is
    --color's (r, g, b) or None, args.fit whether plain sketches are fitted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.colour = parse_colour(args.color) if args.color is not None else None
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
    if args.save_prepared and Path(args.save_prepared).resolve() == Path(args.out).resolve():
        parser.error("--save_prepared: give another folder than -o (the photos go there under "
                     "the same names)")
    args.fit = args.fit is not False and not args.native
    return args


class Outputs(NamedTuple):
    problems: list  # 'path: problem' for each path that names nothing usable
    photos: dict  # each input file, once, in order -> the path of its photo
    prepared: dict  # input -> the path of its prepared sketch (--save_prepared), or {}


def plan_outputs(args: argparse.Namespace) -> Outputs:
    """The inputs args names, a file named twice (sketches/ sketches/a.png) once, and where each
    one's photo and prepared sketch go."""
    files, problems = collect_inputs(args.inputs)
    once = {}
    for path in files:
        once.setdefault(path.resolve(), path)
    photos = output_paths(list(once.values()), Path(args.out))
    prepared = ({path: Path(args.save_prepared) / target.name for path, target in photos.items()}
                if args.save_prepared else {})
    return Outputs(problems, photos, prepared)


def check_outputs(args: argparse.Namespace, outputs: Outputs) -> None:
    """A ValueError naming the file or folder if an output would be written over an input or its
    folder takes no new file: nothing is lost, and it is said before any download, load or work."""
    for kind, option, paths in (("photo", "-o", outputs.photos),
                                ("prepared sketch", "--save_prepared", outputs.prepared)):
        overwritten = overwritten_input(paths)
        if overwritten:
            raise ValueError(f"{overwritten}: its {kind} would be written over an input; choose "
                             f"another {option} (outputs never replace inputs)")
    for folder in map(Path, filter(None, (args.out, args.save_prepared))):
        try:
            check_writable(folder)
        except OSError as e:
            raise ValueError(f"{folder}: cannot write there ({e.strerror or e})") from None


def load_runner(args: argparse.Namespace, n_images: int) -> tuple:
    """(runner, cfg, hints_image): runner(sketches, seeds) -> photos is the --onnx file's session
    or the checkpoint's generator at the setting tune.py picks for this machine and n_images;
    hints_image is --hints' (colours, painted) or None. OSError or ValueError naming a bad file."""
    device, paper = pick_device(args.device), not args.eval
    if args.onnx:
        runner = OnnxGenerator(args.onnx)
        cfg, source = runner.cfg, args.onnx
        if runner.paper != paper:
            raise ValueError(f"{args.onnx}: exported in {'paper' if not paper else 'eval'} "
                             f"mode; export the other (python -m tools.export CHECKPOINT "
                             f"--mode {'paper' if paper else 'eval'})")
    else:
        source = chosen_checkpoint(args)
        generator, cfg = load_generator(source)
        runner = Tuner(generator.to(device), paper=paper, device=device, precision=args.precision,
                       n_images=n_images, tune=args.tune, tune_threads=args.threads == 0)
    if (args.hints or args.colour is not None) and not cfg.hints:
        raise ValueError(f"{source}: this model was trained without colour hints "
                         "(no hint channels); --hints and --color need one trained with --hints")
    hints_image = read_hints_image(args.hints) if args.hints else None
    return runner, cfg, hints_image


def prepare_input(path: Path, cfg: Config, args: argparse.Namespace, hints_image=None):
    """The sketch.Prepared input of one file, with its colour hints; a ValueError 'path: problem'
    for one that will not do. A sketch without a drawing to fit is named on stderr."""
    try:
        prepared = prepare_sketch(path, cfg.image_size, cfg.direction, fit=args.fit,
                                  native_multiple=2**cfg.num_downs if args.native else 0)
    except (OSError, ValueError, MemoryError) as e:
        raise ValueError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    try:
        prepared.hints = hint_channels(prepared, cfg, hints_image, args.colour, args.hints)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if prepared.blank:  # not an error: the photo is still made, from the whole sketch
        print(f"infer.py: {path}: no drawing found (no strokes stand out from the paper); "
              "made from the whole sketch, unfitted", file=sys.stderr)
    return prepared


def saved(image, target: Path) -> bool:
    """Write image at target (write_image); False, said on stderr, where it cannot."""
    try:
        write_image(image, target)
    except OSError as e:
        print(f"infer.py: error: {target}: cannot write ({e})", file=sys.stderr)
        return False
    return True


def run_batch(runner, group: list, photos: dict, seed: int, transfer: bool = True) -> int:
    """Generate and write the photos of [(path, Prepared)] together; how many were written. After
    a failure (out of memory included) one at a time: only an input that fails alone is lost."""
    try:
        made = generate(runner, [prepared for _, prepared in group], seed, transfer)
    except (RuntimeError, MemoryError, ValueError) as e:
        if len(group) > 1:
            return sum(run_batch(runner, [item], photos, seed, transfer) for item in group)
        print(f"infer.py: error: {group[0][0]}: generating it failed: {first_line(e)}",
              file=sys.stderr)
        return 0
    written = 0
    for (path, _), photo in zip(group, made):
        if saved(photo, photos[path]):
            written += 1
            print(f"{path} -> {photos[path]}")
    return written


def make_photos(runner, cfg: Config, args: argparse.Namespace, outputs: Outputs,
                hints_image=None) -> int:
    """Prepare every input, run same-size ones --batch_size (or as many as fit in memory) at a
    time and write their photos; each failure is named on its own line on stderr and the rest are
    still made. Returns the exit code: 2 if any input failed."""
    for problem in outputs.problems:
        print(f"infer.py: error: {problem}", file=sys.stderr)
    failed, written = len(outputs.problems), 0
    pending, needs, limits = {}, {}, {}  # per tensor shape: inputs, bytes for one, per call

    def run(group):
        nonlocal failed, written
        made = run_batch(runner, group, outputs.photos, args.seed, args.transfer)
        failed, written = failed + len(group) - made, written + made

    for path in outputs.photos:
        try:
            prepared = prepare_input(path, cfg, args, hints_image)
        except ValueError as e:
            print(f"infer.py: error: {e}", file=sys.stderr)
            failed += 1
            continue
        shape = tuple(prepared.sketch.shape)
        if shape not in needs:
            needs[shape] = activation_bytes(cfg, shape)
        if shape not in pending:  # inputs per call: as many as fit in memory now
            limits[shape] = batch_limit(needs[shape], args.batch_size)
        if not limits[shape]:
            print(f"infer.py: error: {path}: generating it at {shape[2]}×{shape[1]} takes up to "
                  f"{size_text(needs[shape])} of memory, more than the "
                  f"{size_text(memory_short(needs[shape]) or 0)} available"
                  + (" (without --native it runs at the training size)" if args.native else ""),
                  file=sys.stderr)
            failed += 1
            continue
        if outputs.prepared and not saved(to_image(
                prepared.sketch if prepared.hints is None
                else overlay(prepared.sketch, prepared.hints)), outputs.prepared[path]):
            failed += 1
        group = pending.setdefault(shape, [])
        group.append((path, prepared))
        if len(group) >= limits[shape]:
            run(pending.pop(shape))
    for group in pending.values():
        run(group)
    if failed:  # the bad ones are named on stderr, one line each; the count goes with the outputs
        made = f"{written} written to {Path(args.out)}" if written else "nothing was written"
        print(f"{failed} of {len(outputs.photos) + len(outputs.problems)} inputs failed; {made}")
    return 2 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    outputs = plan_outputs(args)
    try:
        check_outputs(args, outputs)
        runner, cfg, hints_image = load_runner(args, len(outputs.photos))
    except (OSError, ValueError) as e:
        print(f"infer.py: error: {e}", file=sys.stderr)
        return 2
    return make_photos(runner, cfg, args, outputs, hints_image)


if __name__ == "__main__":
    sys.exit(main())
