"""`ssvq tvm` parses into the job's config; the latency table lists every build."""
from ssvq_deploy.cli import build_parser, tvm_table


def test_parser_defaults_and_flags():
    args = build_parser().parse_args(["tvm", "--model", "mobilenetv2_ssvq", "--threads", "2", "--no-aarch64"])
    assert args.func.__name__ == "cmd_tvm"
    assert (args.threads, args.runs, args.rounds, args.mcpu, args.aarch64, args.runner) == (
        2, 50, 3, "auto", False, True)


def test_table_rows():
    names = ["tvm_fp32", "tvm_ssvq_fused", "ort_fp32", "ort_int8"]
    report = {key: {n: float(i + 1) for i, n in enumerate(names)}
              for key in ("latency_ms", "latency_p90_ms", "latency_min_ms")}
    table = tvm_table(report)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["build", "latency_ms"] and len(lines) == 2 + len(names)
    assert lines[3].split()[0] == "tvm_ssvq_fused" and lines[3].split()[4] == "0.5"  # tvm_fp32 / 2.0
