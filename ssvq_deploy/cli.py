"""`ssvq` command line: compress, export. Each subcommand parses into the library's configs and calls one verb."""
from __future__ import annotations

import argparse
import logging
import sys

from .errors import SSVQError
from .table import format_table

LAYER_COLUMNS = ["name", "shape", "method", "k", "d", "bits_per_weight", "rel_error"]


def _add_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="recipe name, e.g. mobilenetv2_ssvq")
    p.add_argument("--weights", help="torchvision-format checkpoint (default: the model's packaged weights)")
    p.add_argument("--k", type=int, help="codebook size (power of two); default from the recipe")
    p.add_argument("--d", type=int, help="sub-vector length; default from the recipe")
    p.add_argument("--method", choices=["ssvq", "vq"], help="default from the recipe")


def _recipe(args):
    from .recipe import load_recipe
    return load_recipe(args.model).with_quant(k=args.k, d=args.d, method=args.method)


def cmd_compress(args) -> None:
    from .pipeline import compress, write_compression
    result = compress(_recipe(args), args.weights, progress=True)
    path = write_compression(result, args.out)
    r = result.report
    print(format_table(r["layers"], LAYER_COLUMNS))
    print(f"\n{r['model']} {r['method']}: {r['n_weights']} weights, {r['bits_per_weight']:.4f} bits/weight, "
          f"compression ratio {r['compression_ratio']:.2f}x -> {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssvq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compress", help="k-means compress a model and write the packed file + report.json")
    _add_quant_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_compress)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except SSVQError as exc:
        print(f"ssvq {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
