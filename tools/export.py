"""Export the generator in both test-time modes as ONNX and torch.export files, checked by eager.

    # -> models/NAME/generator.{paper,eval}.{onnx,pt2}
    python -m tools.export models/NAME/generator.pt
    python -m tools.export models/NAME/generator.pt --mode eval --out exported/
    python infer.py sketch.png --onnx models/NAME/generator.paper.onnx   # run it with onnxruntime

eval: batch norm folded into the convs. paper: per-image statistics and dropout, whose masks are
inputs (mask0, mask1, ...: an exported graph draws no torch.Generator stream), drawn by infer.py
--onnx with generator.draw_masks as torch draws them: the same seed, the same photo. Each file is
checked against the eager generator (TOLERANCE); the ONNX file holds the config, mode and dropout
rates. onnx, onnxscript and onnxruntime are optional. Details: docs/tools.md (Export).
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn

from config import SWITCH, first_line
from generator import draw_masks, fold_batchnorm, mask_shapes, paper_mode, translate
from save import atomic_write, load_generator

TOLERANCE = 1e-4  # largest |exported - eager| allowed, on the [-1, 1] scale (fp32 reordering)
MODES = ("paper", "eval")


class MaskedPaper(nn.Module):
    """Paper-mode G with its dropout masks as inputs: forward(sketch, masks) -> photo."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.paper = paper_mode(generator)

    def forward(self, sketch: torch.Tensor, masks: tuple) -> torch.Tensor:
        return self.paper(sketch, masks=list(masks))


def example_inputs(generator: nn.Module, paper: bool, size: int, seeds=(1, 2)) -> tuple:
    """(module to export, its example arguments, dropout rates) for a batch of len(seeds)."""
    sketch = torch.rand(len(seeds), 3, size, size, generator=torch.Generator().manual_seed(0))
    sketch = sketch * 2 - 1
    if not paper:
        return fold_batchnorm(generator), (sketch,), []
    model = MaskedPaper(generator)
    rates = [layer.p for layer in model.paper.dropouts]
    masks = draw_masks(mask_shapes(model.paper, size, size), rates, seeds)
    return model, (sketch, tuple(masks)), rates


def export_program(model: nn.Module, args: tuple) -> torch.export.ExportedProgram:
    """torch.export of model with a dynamic batch dimension on every input."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    shapes = ({0: batch},) if len(args) == 1 else ({0: batch}, tuple({0: batch} for _ in args[1]))
    return torch.export.export(model, args, dynamic_shapes=shapes)


def flat(args: tuple) -> list:
    """The example arguments as the flat list of input tensors onnxruntime takes."""
    return [args[0], *(args[1] if len(args) > 1 else ())]


def input_names(args: tuple) -> list:
    return ["sketch", *(f"mask{k}" for k in range(len(flat(args)) - 1))]


def export_onnx(program, args: tuple, path: Path, metadata: dict) -> None:
    """program as an ONNX file with metadata (onnx and onnxscript needed)."""
    import onnx
    onnx_program = torch.onnx.export(program, args, input_names=input_names(args),
                                     output_names=["photo"], dynamo=True, verbose=False)
    proto = onnx_program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    onnx.checker.check_model(str(path))


def onnx_output(path: Path, args: tuple) -> torch.Tensor:
    """What onnxruntime's CPU provider makes of args."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(input_names(args), flat(args))}
    return torch.from_numpy(session.run(None, feeds)[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="generator.pt or last.pt of a run")
    parser.add_argument("--mode", choices=MODES, nargs="+", default=list(MODES),
                        help="test-time modes to export")
    parser.add_argument("--out", help="folder for the files (default: beside the checkpoint)")
    parser.add_argument("--replace", **SWITCH, help="write over files an earlier export made")
    args = parser.parse_args(argv)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
        kinds = {"torch.export": "pt2", "onnx": "onnx"}
    except ImportError as e:
        print(f"export.py: {e.name} is not installed (pip install onnx onnxscript onnxruntime): "
              "writing the torch.export programs only")
        kinds = {"torch.export": "pt2"}
    checkpoint = Path(args.checkpoint)
    out_dir = Path(args.out) if args.out else checkpoint.parent
    paths = {mode: {kind: out_dir / f"{checkpoint.stem}.{mode}.{ending}"
                    for kind, ending in kinds.items()} for mode in args.mode}
    try:
        there = [path for files in paths.values() for path in files.values() if path.exists()]
        if there and not args.replace:  # nothing in a run folder is replaced unasked
            raise ValueError(f"{there[0]} exists; pass --replace to write over it")
        generator, cfg = load_generator(checkpoint)
        if cfg.hints:  # infer.py --onnx has no way to give them
            raise ValueError(f"{checkpoint}: a model trained with colour hints (7 input "
                             "channels) is not exported; run it with infer.py")
        out_dir.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        print(f"export.py: error: {first_line(e, 400)}", file=sys.stderr)
        return 2
    failed = 0
    for mode in args.mode:
        paper = mode == "paper"
        model, example, rates = example_inputs(generator, paper, cfg.image_size)
        program = export_program(model, example)
        atomic_write(paths[mode]["torch.export"], lambda f: torch.export.save(program, f))
        # the check: another batch size than exported with, against the eager generator
        _, check, _ = example_inputs(generator, paper, cfg.image_size, seeds=(3, 4, 5))
        expected = translate(generator, check[0], paper=paper, seeds=(3, 4, 5))
        made = {"torch.export": torch.export.load(paths[mode]["torch.export"]).module()(*check)}
        if "onnx" in kinds:
            metadata = {"pix2pix_mode": mode, "pix2pix_config": json.dumps(cfg.to_dict()),
                        "pix2pix_dropout": json.dumps(rates)}
            export_onnx(program, example, paths[mode]["onnx"], metadata)
            made["onnx"] = onnx_output(paths[mode]["onnx"], check)
        for kind, output in made.items():
            error = (output - expected).abs().max().item()
            verdict = "ok" if error <= TOLERANCE else f"FAILED (over {TOLERANCE:g})"
            failed += error > TOLERANCE
            print(f"{mode:5s} {kind:12s} {paths[mode][kind]} | max |exported - eager| {error:.2e} "
                  f"{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
