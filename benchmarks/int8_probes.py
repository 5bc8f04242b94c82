"""INT8 probes outside act_policy's recipes: NNCF's post-training quantization and raw ONNX Runtime options.

  python benchmarks/int8_probes.py BUNDLE nncf [preset=mixed|performance] [act_range=MINMAX|MEAN_MINMAX]
                                               [bias_correction=fast|off] [groups=G1,G2,...] [samples=64]
  python benchmarks/int8_probes.py BUNDLE ort  [activations=u8|u16] [weights=s8|s16] [calibration=MinMax|Percentile]
                                               [Calib...=VALUE (any quantize_static extra option)] [groups=...]

Each run quantizes BUNDLE's act_fp32.onnx the way named, calibrated on ``samples`` synthetic scenes,
and prints one JSON line: its held-out error (the same 8 held-out scenes, reference and metric as
``benchmarks/int8_recipe.py``) and the node counts of ONNX Runtime's optimized graph, which say
whether the INT8 kernels are the ones act_policy's recipes get (QLinearConv / QGemm / QLinearAdd).
``groups`` are :data:`act_policy.export.quantize.NODE_GROUPS` kept in float (default: the default
recipe's). NNCF is not an act_policy dependency: ``pip install nncf`` (3.4.0 was used).
The findings are in benchmarks/int8_recipe.md, section 5.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from int8_recipe import Study

from act_policy.export.bundle import FP32_GRAPH
from act_policy.export.quantize import DEFAULT_RECIPE, QUANTIZED_OPS, Recipe, calibration_stride, float_nodes


def nncf_graph(study: Study, model: Any, excluded: list[str], options: dict[str, str]) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced: dict[str, Any] = {}
    if "act_range" in options:
        advanced["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet, options["act_range"])
    # NNCF's non-fast BiasCorrection fails on this graph (ORT cannot find a Conv output it cuts at)
    advanced["disable_bias_correction"] = options.get("bias_correction", "fast") == "off"
    return nncf.quantize(model, nncf.Dataset(list(study.feeds())),
                         preset=nncf.QuantizationPreset(options.get("preset", "mixed")),
                         subset_size=study.samples, fast_bias_correction=True,
                         # attention MatMuls (two activations) stay float, as in act_policy's recipes
                         ignored_scope=nncf.IgnoredScope(names=excluded, types=["MatMul"], validate=False),
                         advanced_parameters=AdvancedQuantizationParameters(**advanced))


def ort_graph(study: Study, src: Path, dst: Path, excluded: list[str], options: dict[str, str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Strided like act_policy's (``CalibStridedMinMax``): histogram methods hold one stride at once."""

        def __init__(self) -> None:
            self.feeds, self.count, self.end = study.feeds(), 0, study.samples

        def __len__(self) -> int:
            return study.samples

        def set_range(self, start_index: int, end_index: int) -> None:
            self.end = end_index

        def get_next(self) -> dict | None:
            if self.count >= self.end:
                return None
            self.count += 1
            return next(self.feeds, None)

    types = {"u8": QuantType.QUInt8, "u16": QuantType.QUInt16, "s8": QuantType.QInt8, "s16": QuantType.QInt16}
    extra = {"CalibStridedMinMax": calibration_stride(study.samples),
             **{k: json.loads(v.lower() if v in ("True", "False") else v)
                for k, v in options.items() if k.startswith("Calib")}}
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=excluded, per_channel=True,
                    activation_type=types[options.get("activations", "u8")],
                    weight_type=types[options.get("weights", "s8")],
                    calibrate_method=getattr(CalibrationMethod, options.get("calibration", "MinMax")),
                    extra_options=extra)


def optimized_ops(graph: Path) -> dict[str, int]:
    """Node counts of ONNX Runtime's optimized form of ``graph`` (the kernels it runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        counts = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    return {op: counts[op] for op in ("QLinearConv", "Conv", "QGemm", "Gemm", "QLinearAdd", "Add")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("tool", choices=("nncf", "ort"))
    parser.add_argument("options", nargs="*", help="key=value")
    args = parser.parse_args()
    options = dict(o.split("=", 1) for o in args.options)
    groups = options.pop("groups", None)
    recipe = DEFAULT_RECIPE if groups is None else Recipe(frozenset(g for g in groups.split(",") if g))
    study = Study(args.bundle, int(options.pop("samples", 64)), 8)
    src = args.bundle / FP32_GRAPH
    model = onnx.load(str(src))
    excluded = float_nodes(model, recipe)
    with tempfile.TemporaryDirectory(dir=args.bundle) as tmp:
        graph = Path(tmp) / "probe.onnx"
        if args.tool == "nncf":
            onnx.save(nncf_graph(study, model, excluded, options), str(graph))
        else:
            ort_graph(study, src, graph, excluded, options)
        errors = study.evaluate(graph, 1)
        ops = optimized_ops(graph)
    print(json.dumps({"bundle": str(args.bundle), "tool": args.tool, "options": sys.argv[3:],
                      "rel_l2_normalized_pct": round(errors["rel_l2_normalized"] * 100, 2),
                      "max_abs_bias_sigma": round(errors["max_abs_bias_normalized"], 4),
                      "optimized_ops": ops, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
