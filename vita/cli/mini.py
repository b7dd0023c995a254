"""`vita mini`: write vita-mini to a folder, or pack the trained parts of a `recipes/mini` run.

    vita mini assemble --out DIR [--parts DIR | --untrained [--tower efficientnet|dinov2|scratch]]
                       [--dtype fp32|bf16|fp16]
    vita mini pack --run RUN_DIR --out PARTS_DIR [--dtype fp16|fp32]

`assemble` writes our canonical layout (what `recipes/mini` stage 1 starts from when `--untrained`; the shipped
vita-mini otherwise). `pack` writes the parts folder that `vita/assets/mini` holds (see `vita.checkpoint.mini`,
`vita.training.mini_parts`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _assemble(args: argparse.Namespace) -> int:
    from vita.checkpoint.assemble import TOWERS
    from vita.checkpoint.mini import PARTS_DIR, assemble_mini

    t0 = time.perf_counter()
    parts = None if args.untrained else (args.parts or PARTS_DIR)
    vision = TOWERS[args.tower]
    out = assemble_mini(args.out, dtype=args.dtype, parts=parts, seed=args.seed, vision=vision)
    what = "untrained vita-mini skeleton" if parts is None else f"vita-mini (parts {parts})"
    print(f"wrote {what} to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from vita.checkpoint.mini import sha256_file
    from vita.training.mini_parts import pack_parts

    out = pack_parts(args.run, args.out, dtype=args.dtype)
    for f in sorted(out.iterdir()):
        print(f"{f}  {f.stat().st_size / 2**20:.1f} MiB  sha256 {sha256_file(f)}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("mini", help="assemble vita-mini, or pack the trained parts of a recipes/mini run")
    sub = p.add_subparsers(dest="mini", required=True)
    a = sub.add_parser("assemble", help="write vita-mini (or its untrained skeleton) in our canonical layout")
    a.add_argument("--out", type=Path, required=True, help="new or empty folder")
    a.add_argument("--parts", type=Path, help="trained parts folder (default: the shipped vita/assets/mini)")
    a.add_argument("--untrained", action="store_true", help="seeded random vision tower / projector / adapter")
    a.add_argument("--seed", type=int, default=0, help="seed of the untrained parts")
    a.add_argument("--tower", default="efficientnet", choices=["efficientnet", "dinov2", "scratch"],
                   help="untrained skeleton's vision tower: the pretrained EfficientNet-Lite0 or DINOv2-S (frozen), "
                        "or a random small ViT")
    a.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    a.set_defaults(func=_assemble)
    k = sub.add_parser("pack", help="the trained parts of a finished stage-3 run -> a parts folder")
    k.add_argument("--run", type=Path, required=True, help="the `vita train --output` folder of the last stage")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--dtype", default="fp16", choices=["fp16", "fp32"])
    k.set_defaults(func=_pack)
    return p
