"""`ssvq` command line: compress, export. Each subcommand parses into the library's configs and calls one verb."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .errors import ConfigError, SSVQError
from .table import format_table

LAYER_COLUMNS = ["name", "shape", "method", "k", "d", "bits_per_weight", "rel_error"]


def _add_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="recipe name, e.g. mobilenetv2_ssvq")
    p.add_argument("--weights", help="checkpoint of the model's state_dict, torch or .safetensors (default: the "
                                     "model's packaged weights)")
    p.add_argument("--k", type=int, help="codebook size (power of two); default from the recipe")
    p.add_argument("--d", type=int, help="sub-vector length; default from the recipe")
    p.add_argument("--method", choices=["ssvq", "vq"], help="default from the recipe")
    p.add_argument("--hessian", action="store_true", default=None,
                   help="weight k-means by a Fisher-diagonal estimate from the bundled training photos")


def _recipe(args):
    from .recipe import load_recipe
    return load_recipe(args.model).with_quant(k=args.k, d=args.d, method=args.method, hessian=args.hessian)


def cmd_compress(args) -> None:
    from .pipeline import compress, write_compression
    result = compress(_recipe(args), args.weights, progress=True)
    path = write_compression(result, args.out)
    r = result.report
    print(format_table(r["layers"], LAYER_COLUMNS))
    print(f"\n{r['model']} {r['method']}: {r['n_weights']} weights, {r['bits_per_weight']:.4f} bits/weight, "
          f"compression ratio {r['compression_ratio']:.2f}x, relative error {r['rel_error']:.4f} -> {path}")


BUILD_COLUMNS = ["build", "onnx_bytes", "x_smaller_than_fp32", "latency_ms", "p90_ms", "x_faster_than_int8"]


def export_table(report: dict) -> str:
    """The export report as one row per build (fp32, int8, ssvq, ssvq decoded at load), with the model's agreement
    metrics (classifiers: top-1 agreement; sentence encoders: embedding cosine and nearest-neighbour agreement)."""
    lat, size = report["latency_ms"], report["onnx_bytes"]
    metrics = report.get("agreement_metrics", ["top1_agreement_vs_fp32"])
    labels = {m: m.replace("_agreement_vs_", "_agree_").replace("_vs_", "_") for m in metrics}
    rows = [{"build": name, "onnx_bytes": size.get(name, size["ssvq"]),
             "x_smaller_than_fp32": size["fp32"] / size.get(name, size["ssvq"]),
             "latency_ms": ms, "p90_ms": report["latency_p90_ms"][name], "x_faster_than_int8": lat["int8"] / ms,
             **{labels[m]: report[f"{m}_by_build"][name] for m in metrics}} for name, ms in lat.items()]
    return format_table(rows, BUILD_COLUMNS + list(labels.values()))


def add_export_args(p: argparse.ArgumentParser) -> None:
    """Options of ``ssvq export`` and ``tools/export.py``."""
    _add_quant_args(p)
    p.add_argument("--compressed", help="reuse a compressed or fine-tuned file instead of running k-means")
    p.add_argument("--portable", action="store_true",
                   help="decode with an ONNX function of standard ops: runs on stock ONNX Runtime, no library")
    p.add_argument("--fused", nargs="?", const="int8", choices=["int8", "float"],
                   help="also build ssvq_fused.onnx: SSVQConv/SSVQGemm straight from the packed weights "
                        "(int8 numerics by default, conv models with static uint8 NHWC activations calibrated on "
                        "the int8 baseline's samples; float matches PyTorch within 1e-4)")
    p.add_argument("--out", help="output folder (default out/<model>)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every timed session (default 1)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per build after warm-up (default 100)")


def cmd_export(args) -> None:
    from .deploy import ExportConfig, run_export
    config = ExportConfig(model=args.model, weights=args.weights, k=args.k, d=args.d, method=args.method,
                          hessian=args.hessian,
                          compressed=args.compressed, portable=args.portable, out=args.out, threads=args.threads,
                          runs=args.runs, fused=args.fused)
    r = run_export(config)
    print(export_table(r))
    print(f"\n{r['model']}: compression ratio {r['compression_ratio']:.2f}x ({r['bits_per_weight']:.3f} bits/weight), "
          f"max |ORT - PyTorch| {r['max_abs_err_vs_torch']:.2e}, batch 1, {r['threads']} thread(s), "
          f"median of {r['latency_runs']} runs, onnxruntime {r['onnxruntime_version']}, {r['seconds']} s")
    print(f"int8: {r['int8_baseline']}; timing input {r['timing_input']}")
    if r["fused"]:
        print(f"ssvq_fused: {r['fused']['numerics']} numerics; {r['fused']['activations']}")
    print(f"decode: {r['decode']}\nreport: {config.out_dir() / 'report.json'}")


def cmd_finetune(args) -> None:
    import dataclasses
    import json
    import os

    import torch.distributed as dist

    from .atomic import ensure_writable_dir, write_text
    from .format import save
    from .models import load_model
    from .pipeline import COMPRESSED_FILE, compress, finetune_compressed, load_compressed

    recipe = _recipe(args)
    changes = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "lr_mask": args.lr_mask,
               "theta": args.theta}
    config = dataclasses.replace(recipe.finetune, **{k: v for k, v in changes.items() if v is not None})
    out = ensure_writable_dir(args.out)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        dist.init_process_group("gloo")
    if args.compressed:
        original, compressed = load_model(recipe.model, args.weights), load_compressed(args.compressed)
    else:
        result = compress(recipe, args.weights, progress=True)
        original, compressed = result.original, result.compressed
    tuned, summary = finetune_compressed(original, compressed, config, args.crops_per_photo, progress=True)
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    save(tuned, out / COMPRESSED_FILE)
    write_text(out / "finetune.json", json.dumps({"model": args.model, **summary}, indent=2))
    from .tasks import task_for
    b, a = summary["held_out_before"], summary["held_out_after"]
    print(f"held-out {task_for(recipe.model).unit}, agreement with fp32: "
          + ", ".join(f"{m} {b[m]:.3f} -> {a[m]:.3f}" for m in b))
    print(f"{summary['steps']} steps, loss {summary['loss_first']:.4f} -> {summary['loss_last']:.4f}, "
          f"signs flipped {summary['signs']['flipped']} / frozen {summary['signs']['frozen']} of "
          f"{summary['signs']['signs']}\nsaved {out / COMPRESSED_FILE} (export it with tools/export.py --compressed)")


def cmd_study(args) -> None:
    from .study import DEFAULT_ARMS, StudyConfig, run_study
    arms = DEFAULT_ARMS
    if args.arms:
        known = {arm[0]: arm for arm in DEFAULT_ARMS}
        unknown = [a for a in args.arms if a not in known]
        if unknown:
            raise ConfigError(f"unknown study arms {unknown}; available: {list(known)}")
        arms = tuple(known[a] for a in args.arms)
    config = StudyConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         crops_per_photo=args.crops_per_photo, seed=args.seed, arms=arms, out=args.out)
    result = run_study(config)
    print(format_table(result["rows"], result["columns"]))
    print(f"\n{result['held_out']}; {result['seconds']} s\nwrote {config.out_dir()}/study.md, study.json, study.png")


def add_emulate_args(p: argparse.ArgumentParser) -> None:
    """Options of ``ssvq emulate`` and ``tools/emulate.py``."""
    _add_quant_args(p)
    p.add_argument("--preset", default="paper_edge",
                   help="accelerator preset: paper_edge (default) or lpddr4_soc, see docs/accelerator.md")
    p.add_argument("--compressed", help="emulate this compressed file instead of running k-means")
    p.add_argument("--onnx", help="emulate this exported SSVQ ONNX model (ssvq export's ssvq.onnx)")
    p.add_argument("--images", type=int, default=4,
                   help="bundled photos run through the engine and the integer reference (default 4)")
    p.add_argument("--size", type=int, help="input resolution (default: the model's, 224 for MobileNetV2)")
    p.add_argument("--requant", default="gemmlowp", choices=["gemmlowp", "fp32"],
                   help="output stage: gemmlowp fixed point (default) or fp32 as ONNX Runtime")
    p.add_argument("--out", help="output folder (default out/<model>/emulate_<preset>)")


def cmd_emulate(args) -> None:
    from .emulator.job import EmulateConfig, run_emulation
    from .emulator.report import LAYER_COLUMNS, STAGE_COLUMNS
    config = EmulateConfig(model=args.model, preset=args.preset, weights=args.weights, k=args.k, d=args.d,
                           method=args.method, hessian=args.hessian, compressed=args.compressed, onnx=args.onnx,
                           images=args.images, size=args.size, requant=args.requant, out=args.out)
    r = run_emulation(config)
    print(format_table(r["layers"], LAYER_COLUMNS))
    print()
    print(format_table(r["stages"], STAGE_COLUMNS))
    cycles, dram, ms = r["cycles"], r["dram_bytes"], r["latency_ms"]
    print(f"\n{r['model']} on {r['preset']}, input {r['input_shape']}: cycles int8 {cycles['int8']} ssvq "
          f"{cycles['ssvq']} ({ms['int8']:.3f} ms vs {ms['ssvq']:.3f} ms), DRAM bytes int8 {dram['int8']} ssvq "
          f"{dram['ssvq']}")
    print(f"speedup_vs_int8 {r['speedup_vs_int8']:.2f}x; bit_exact {r['bit_exact']} (engine == integer reference "
          f"on {len(r['verify_images'])} photo(s), {r['requant']} requant); {r['seconds']} s")
    print(f"report: {config.out_dir() / 'report.json'}\nplot: {r['plot']}")


def cmd_bench(args) -> None:
    from .bench.harness import BenchConfig, markdown, run_bench
    config = BenchConfig(workloads=tuple(args.workloads), threads=tuple(args.threads), runs=args.runs,
                         warmup=args.warmup, out=args.out, compressed=args.compressed)
    r = run_bench(config, progress=lambda message: print(f"[bench] {message}", file=sys.stderr))
    print(markdown(r))
    fallbacks = sorted({f for row in r["rows"] for f in row["fallbacks"]})
    if fallbacks:
        print(f"\n!!! FALLBACK: {len(fallbacks)} node(s) ran a generic path !!!", file=sys.stderr)
        for f in fallbacks:
            print(f"!!! FALLBACK {f}", file=sys.stderr)
    print(f"report: {r['paths']['json']}\ntable: {r['paths']['md']}\nplot: {r['paths']['png']}")


def add_tvm_args(p: argparse.ArgumentParser) -> None:
    """Options of ``ssvq tvm`` and ``tools/tvm_build.py``."""
    _add_quant_args(p)
    p.add_argument("--compressed", help="reuse a compressed or fine-tuned file instead of running k-means")
    p.add_argument("--out", help="output folder (default out/<model>/tvm)")
    p.add_argument("--threads", type=int, default=1, help="threads for every timed build, TVM and ORT (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per build and round (default 50)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    p.add_argument("--mcpu", default="auto",
                   help="x86 CPU for LLVM (default auto: skylake-avx512 where the host has AVX-512, else the host's)")
    p.add_argument("--no-aarch64", dest="aarch64", action="store_false", help="skip the aarch64 cross-build")
    p.add_argument("--no-runner", dest="runner", action="store_false", help="skip building the C++ runner")
    p.add_argument("--tune", action="store_true",
                   help="time a few register tiles per kernel first and update the tile cache (a few minutes)")
    p.add_argument("--no-tuned", dest="tuned", action="store_false",
                   help="ignore the tile cache (ssvq_deploy/tvm_backend/tuned/): heuristic tiles only")


TVM_COLUMNS = ["build", "latency_ms", "p90_ms", "min_ms", "x_vs_tvm_fp32", "x_vs_ort_int8"]


def tvm_table(report: dict) -> str:
    """The ``ssvq tvm`` latency table: one row per build, TVM and ONNX Runtime."""
    lat = report["latency_ms"]
    rows = [{"build": name, "latency_ms": ms, "p90_ms": report["latency_p90_ms"][name],
             "min_ms": report["latency_min_ms"][name], "x_vs_tvm_fp32": lat["tvm_fp32"] / ms,
             "x_vs_ort_int8": lat["ort_int8"] / ms} for name, ms in lat.items()]
    return format_table(rows, TVM_COLUMNS)


def cmd_tvm(args) -> None:
    from .tvm_backend.job import TvmConfig, run_tvm
    config = TvmConfig(model=args.model, weights=args.weights, k=args.k, d=args.d, method=args.method,
                       hessian=args.hessian, compressed=args.compressed, out=args.out, threads=args.threads,
                       runs=args.runs, rounds=args.rounds, mcpu=args.mcpu, aarch64=args.aarch64, runner=args.runner,
                       tuned=args.tuned, tune=args.tune)
    r = run_tvm(config)
    print(tvm_table(r))
    check, err = r["no_full_weight_buffer"], r["max_abs_err_vs_torch"]
    largest = max(check["kernels"], key=lambda k: k["weight_numel"], default=None)
    print(f"\n{r['model']}: batch 1, {r['threads']} thread(s), median of {r['latency_runs']} runs (interleaved), "
          f"target {r['target']}, tvm {r['tvm_version']}, onnxruntime {r['onnxruntime_version']}")
    print(f"max |TVM - PyTorch|: ssvq-fused {err['tvm_ssvq_fused']:.2e}, fp32 {err['tvm_fp32']:.2e}")
    print(f"no full-weight buffer: {'ok' if check['ok'] else 'FAILED'} over {len(check['kernels'])} fused kernels"
          + (f" (largest weight {largest['weight_shape']} = {largest['weight_numel']} elements, its decode "
             f"buffer {largest['decode_buffers']})" if largest else ""))
    for arch, files in r["artifacts"].items():
        for name, info in files.items():
            if isinstance(info, dict) and "path" in info:
                print(f"{arch} {name}: {info['path']} ({info['bytes']} bytes, {info['machine']})")
    print(f"runner: {r['runner']['status']}" + (f", {r['runner']['median_ms']:.3f} ms median"
                                               if "median_ms" in r["runner"] else ""))
    print(f"report: {config.out_dir() / 'report.json'} ({r['seconds']} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssvq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compress", help="k-means compress a model and write the packed file + report.json")
    _add_quant_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("export", help="export to ONNX with SSVQDecode, verify, and compare with fp32 and int8")
    add_export_args(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("finetune", help="distil the fp32 model into its compressed form on the bundled photos "
                                        "(runs under torchrun too)")
    _add_quant_args(p)
    p.add_argument("--compressed", help="start from this compressed file instead of running k-means")
    p.add_argument("--epochs", type=int, help="default from the recipe")
    p.add_argument("--batch-size", type=int, help="global batch; default from the recipe")
    p.add_argument("--lr", type=float, help="codebook learning rate; default from the recipe")
    p.add_argument("--lr-mask", type=float, help="sign-latent learning rate; default from the recipe")
    p.add_argument("--theta", type=int, help="flips before a sign freezes; default from the recipe")
    p.add_argument("--crops-per-photo", "--crops-per-sample", dest="crops_per_photo", type=int,
                   help="augmented copies of each training sample per epoch: random crops of a photo (default 16), "
                        "random token spans of a text passage (default 1)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("study", help="SSVQ vs VQ at equal bits, before and after the same fine-tuning budget")
    p.add_argument("--model", default="mobilenetv2_ssvq", help="recipe name")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crops-per-photo", "--crops-per-sample", dest="crops_per_photo", type=int,
                   help="default: the model's (photos 16, texts 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", nargs="+", help='arms to run by label, e.g. "SSVQ k16 d8" "VQ k64 d4" (default: all)')
    p.add_argument("--out", help="output folder (default out/study_<model>)")
    p.set_defaults(func=cmd_study)
    p = sub.add_parser("bench", help="latency / memory of fp32, int8, SSVQ decode-at-load and SSVQ fused, side by side")
    p.add_argument("--workloads", nargs="+",
                   default=["mobilenetv2_b1", "mobilenetv2_b8", "linear_4x4096", "minilm_b1"],
                   help="mobilenetv2_b<batch>, linear_<depth>x<width>, minilm_b<batch> (128 tokens) (default: "
                        "mobilenetv2_b1 mobilenetv2_b8 linear_4x4096 minilm_b1)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, os.cpu_count() or 1],
                   help="intra-op thread counts (default: 1 and all cores)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per configuration (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--compressed", help="compressed file of MobileNetV2 or MiniLM, used by that model's workloads "
                                        "(default: compress with k-means first)")
    p.add_argument("--out", default="out/bench", help="output folder (default out/bench)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("tvm", help="TVM: SSVQDecode fused into compiled conv/dense kernels vs TVM fp32 and ONNX "
                                   "Runtime; host .so, aarch64 cross-build, C++ runner")
    add_tvm_args(p)
    p.set_defaults(func=cmd_tvm)
    p = sub.add_parser("emulate", help="bit-accurate accelerator emulation: cycles, DRAM bytes, speedup vs int8")
    add_emulate_args(p)
    p.set_defaults(func=cmd_emulate)
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
