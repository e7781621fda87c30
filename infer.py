"""Turn sketches into photos with a trained generator.

    python infer.py sketch.jpg                         # -> out/sketch.png, newest models/*/generator.pt
    python infer.py sketches/ more.png -o results --checkpoint models/edges2shoes/generator.pt
    python infer.py sketch.jpg --eval                  # deterministic: no dropout, running statistics
    python infer.py sketch.jpg --pretrained edges2shoes  # the authors' weights, downloaded once

Inputs: a plain sketch of any size (black lines on white, grayscale or colour, JPEG or PNG), or an
edges2shoes-style pair twice as wide as high, of which the input half is used. Non-square sketches are
padded with white to a square, then resized to the model's resolution. One PNG per input.
By default the generator runs as in the paper at test time (dropout on, per-image batch statistics),
so each run draws a slightly different photo; --seed fixes it, --eval makes it deterministic.
"""

import argparse
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # Read once when torch loads OpenMP: idle threads sleep instead of spinning. On a CPU shared with other
    # processes a spinning thread starves the working one: the 2-thread generator ran 2× (256×256) to 70×
    # (64×64) slower (bench.py infer). An OMP_WAIT_POLICY set in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from config import SWITCH, add_device_flag, pick_device  # noqa: E402
from dataset import list_images, load_rgb, split_pair, to_image, to_tensor  # noqa: E402
from generator import for_inference, translate  # noqa: E402
from save import PRETRAINED, load_generator, pretrained_checkpoint  # noqa: E402


def find_checkpoint(models_dir: str = "models") -> Path:
    """The most recently written generator.pt under models/, so infer.py works right after training."""
    found = sorted(Path(models_dir).glob("*/generator.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{models_dir}/: no */generator.pt; train first (python train.py --demo) "
                                f"or pass --checkpoint")
    return found[-1]


def collect_inputs(paths) -> list:
    """Files as given, folders expanded to the images directly inside them."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = list_images(path, required=False)
            if not found:
                raise FileNotFoundError(f"{path}: no images in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def prepare_sketch(path, image_size: int, direction: str = "AtoB") -> torch.Tensor:
    """Load one input as a (3, S, S) tensor in [-1, 1]: the input half of a pair, or a padded sketch."""
    img = load_rgb(path)
    w, h = img.size
    if w == 2 * h:  # an AB pair: take the half the model reads
        left, right = split_pair(img)
        img = right if direction == "BtoA" else left
    side = max(img.size)
    img = ImageOps.pad(img, (side, side), color="white") if img.width != img.height else img
    return to_tensor(img.resize((image_size, image_size), Image.BICUBIC))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="sketch images or folders of them")
    parser.add_argument("-o", "--out", default="out", help="folder for the generated PNGs")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoint",
                       help="generator.pt or last.pt (default: newest models/*/generator.pt)")
    which.add_argument("--pretrained", choices=PRETRAINED, metavar="NAME",
                       help=f"the authors' weights, fetched once: {', '.join(PRETRAINED)}")
    parser.add_argument("--eval", **SWITCH, help="eval mode: no dropout, deterministic output")
    parser.add_argument("--seed", type=int, default=0, help="seed for the dropout noise in paper mode")
    add_device_flag(parser)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default, one per core)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
        checkpoint = (pretrained_checkpoint(args.pretrained) if args.pretrained
                      else Path(args.checkpoint) if args.checkpoint else find_checkpoint())
        generator, cfg = load_generator(checkpoint)
        generator.to(device)
        # Eval mode: batch norm folded into the convs, NHWC; paper mode: G as it is (see for_inference).
        model = for_inference(generator, paper=not args.eval)
        files = collect_inputs(args.inputs)
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        for path in files:
            sketch = prepare_sketch(path, cfg.image_size, cfg.direction)[None].to(device)  # (1, 3, S, S)
            with torch.inference_mode():
                fake_photo = translate(model, sketch, paper=not args.eval)[0]
            target = out_dir / f"{path.stem}.png"
            to_image(fake_photo).save(target)
            print(f"{path} -> {target}")
    except (OSError, ValueError) as e:
        print(f"infer.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
