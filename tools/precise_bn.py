"""Precise batch norm: recompute a generator's running statistics so that --eval is worth using.

    python -m tools.precise_bn models/NAME/generator.pt   # -> models/NAME/generator_precise_bn.pt
    python -m tools.precise_bn models/NAME/generator.pt --data data/edges2shoes/train --images 1000
    python infer.py sketch.png --eval --checkpoint models/NAME/generator_precise_bn.pt

Training leaves running statistics that are an exponential average (momentum 0.1) of batch
statistics taken while the weights were still moving. Here they are replaced by the plain average
over --images training sketches, run in batches of the training batch size with the final weights
(train mode, dropout on, as in training; nothing else changes): eval mode then scores as paper mode
does, which never reads these statistics (docs/reproduction.md, "What eval mode costs"). The new
file holds the generator and config as generator.pt does, plus what was averaged.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

from config import SWITCH, add_device_flag, first_line, pick_device
from dataset import PairDataset, train_val_folders
from save import atomic_save, load_checkpoint, load_generator


@torch.no_grad()
def recompute_batchnorm(generator: nn.Module, batches) -> int:
    """Set every batch norm's running statistics to the equal-weight average of the batch
    statistics of batches (sketch tensors, train mode, dropout on); returns the images seen."""
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta, was_training = [m.momentum for m in norms], generator.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch counts the same
    generator.train()
    seen = 0
    try:
        for sketch in batches:
            generator(sketch)
            seen += len(sketch)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        generator.train(was_training)
    return seen


def training_batches(data_dir, cfg, images: int, batch_size: int, device, seed: int = 0):
    """Sketch batches of images training pairs (a seeded random choice, whole batches only)."""
    data = PairDataset(data_dir, cfg.image_size, direction=cfg.direction)
    order = torch.randperm(len(data.files), generator=torch.Generator().manual_seed(seed))
    chosen = [data.files[i] for i in order[:images]]
    for start in range(0, len(chosen) - batch_size + 1, batch_size):
        yield torch.stack([data.load(path)[0] for path in chosen[start:start + batch_size]]).to(
            device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="generator.pt or last.pt of a run")
    parser.add_argument("--data", help="training pairs (default: the run's data_dir/train)")
    parser.add_argument("--images", type=int, default=1000, help="training images to average over")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="images per batch (default: the run's training batch size)")
    parser.add_argument("--out", help="file to write (default: generator_precise_bn.pt beside "
                                      "the checkpoint)")
    parser.add_argument("--seed", type=int, default=0, help="which images, and their dropout")
    parser.add_argument("--replace", **SWITCH, help="write over an existing --out file")
    add_device_flag(parser)
    args = parser.parse_args(argv)
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.with_name("generator_precise_bn.pt")
    try:
        if out.exists() and not args.replace:  # nothing in a run folder is replaced unasked
            raise ValueError(f"{out} exists; pass --replace to write over it")
        generator, cfg = load_generator(checkpoint)
        if cfg.hints:  # its statistics would depend on how many hints the images were given
            raise ValueError(f"{checkpoint}: a model trained with colour hints is not supported; "
                             "run it in paper mode (the default), which never reads them")
        step = load_checkpoint(checkpoint, keys=("generator", "config")).get("step", 0)
        batch_size = args.batch_size or cfg.batch_size
        if args.images < batch_size:
            raise ValueError(f"--images {args.images} is less than one batch of {batch_size}")
        data_dir = Path(args.data) if args.data else train_val_folders(cfg.data_dir)[0]
        device = pick_device(args.device)
        generator.to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            seen = recompute_batchnorm(generator, training_batches(
                data_dir, cfg, args.images, batch_size, device, args.seed))
        if seen == 0:
            raise ValueError(f"{data_dir}: fewer than {batch_size} pairs")
        atomic_save({"generator": generator.cpu().state_dict(), "config": cfg.to_dict(),
                     "step": step, "precise_bn": {"images": seen, "batch_size": batch_size,
                                                  "data": str(data_dir)}}, out)
    except (OSError, ValueError) as e:
        print(f"precise_bn.py: error: {first_line(e, 400)}", file=sys.stderr)
        return 2
    print(f"running statistics of {checkpoint} recomputed over {seen} images of {data_dir} "
          f"(batches of {batch_size}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
