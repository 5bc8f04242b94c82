"""A fake ``hailo`` command (Dataflow Compiler CLI) that turns a kit model into a fake HEF for the fake HailoRT.

Test-only. It implements exactly the three calls ``hailo_compile.sh`` makes, with the flags seen
in public DFC scripts (``hailo parser onnx M --hw-arch A --net-name N --har-path H -y``;
``hailo optimize H --hw-arch A --calib-set-path C --model-script S --output-har-path O``;
``hailo compiler O --hw-arch A --output-dir D``), and emulates what matters for act_policy:

* the parser rejects ONNX IR version ≥ 10 (reported for Hailo's checker);
* ``optimize`` applies the model script's ``normalization([mean], [std][, input_layerK])`` lines,
  checks the calibration set's layout (N×H×W×C for images, keys ``<net>/input_layerK`` in an
  ``.npz`` for several inputs) and derives 8-bit asymmetric quantization parameters from the
  calibration data's range at each input and output — as post-training calibration does;
* ``compiler`` writes the JSON "HEF" that ``hailo_platform``'s fake loads, with the HailoRT release
  its DFC version was made for (``act_policy.hailo.layout.HAILORT_OF_DFC``, from the Model Zoo
  changelog), which the fake HailoRT checks like a real one checks HEF features;
* every command first logs the header the real CLI logs ("[info] Hailo DFC Version: 3.33.0",
  "[info] HailoRT Version: ...", as in published DFC logs, e.g. hailo-ai/hailo_model_zoo issue 136);
  the version is ``FAKE_DFC_VERSION`` (default 3.33.0);
* without ``FAKE_DFC_GPU=1`` (no GPU) ``optimize`` lowers a model script's optimization level > 0 to
  0 with the DFC's own warning text ("Reducing optimization level to 0 (the accuracy won't be
  optimized and compression won't be used) because there's no available GPU", quoted from public
  DFC logs); the fake quantizes identically at every level — it has no fine-tuning to emulate;
* ``quantization_param({output_layer*}, precision_mode=a16_w16)`` makes the outputs 16-bit streams
  (as hailo_model_zoo's detr_resnet_v1_18_bn.alls asks): quantization parameters over 65535 steps.

With ``FAKE_DFC_QUANTIZE_INSIDE=1`` ``optimize`` also quantizes the graph itself (ONNX Runtime
static QDQ: per-channel int8 weights, uint8 activations, MinMax on the calibration set) and the
HEF runs that graph — a proxy for the NPU's 8-bit weights and activations, not the DFC's own
algorithms (equalization, bias correction, fine-tuning).

Streams are named like real HEFs (``<net>/input_layer1``); NCHW graph inputs become NHWC streams.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from act_policy.hailo.layout import HAILORT_OF_DFC, release

ARCHES = ("hailo8", "hailo8l", "hailo8r", "hailo15h", "hailo10h")
CALIB_SAMPLES = 16  # forward passes used to find output ranges
FLAVOR = re.compile(r"^\s*model_optimization_flavor\(.*optimization_level\s*=\s*(\d+)")
OUTPUT_16BIT = re.compile(r"^\s*quantization_param\(\s*\{output_layer\*\}\s*,\s*precision_mode\s*=\s*a16_w16\s*\)")
NORMALIZATION = re.compile(r"^\s*\w+\s*=\s*normalization\(\s*\[([^\]]*)\]\s*,\s*\[([^\]]*)\]\s*(?:,\s*(\w+)\s*)?\)")


def fail(message: str) -> None:
    print(f"[error] {message}", file=sys.stderr)
    sys.exit(1)


def stream_shape(onnx_shape: list[int]) -> list[int]:
    if len(onnx_shape) == 4:
        _, c, h, w = onnx_shape
        return [h, w, c]
    if len(onnx_shape) == 2:
        return [onnx_shape[1]]
    return [1, *onnx_shape[1:]]


def qparams(lo: float, hi: float, levels: int = 255) -> dict[str, float]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / levels or 1.0
    return {"qp_scale": scale, "qp_zp": float(np.rint(-lo / scale)), "limvals_min": lo, "limvals_max": hi}


def parser(args: argparse.Namespace) -> None:
    import onnx

    model = onnx.load(args.model)
    if model.ir_version >= 10:
        fail(f"Unsupported ONNX IR version {model.ir_version}")
    if args.hw_arch not in ARCHES:
        fail(f"--hw-arch {args.hw_arch}")

    def shapes(values):
        return [[v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]] for v in values]

    har = {"net": args.net_name, "arch": args.hw_arch, "onnx": str(Path(args.model).resolve()),
           "inputs": shapes(model.graph.input), "outputs": shapes(model.graph.output)}
    Path(args.har_path).write_text(json.dumps(har))


def optimize(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    har = json.loads(Path(args.har).read_text())
    net, inputs = har["net"], har["inputs"]
    norms: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    output_bits = 8
    for line in Path(args.model_script).read_text().splitlines():
        level = FLAVOR.match(line)
        if level and int(level.group(1)) > 0 and os.environ.get("FAKE_DFC_GPU") != "1":
            print("[warning] Reducing optimization level to 0 (the accuracy won't be optimized and compression "
                  "won't be used) because there's no available GPU")
        if OUTPUT_16BIT.match(line):
            output_bits = 16
        m = NORMALIZATION.match(line)
        if m:
            layer = int(m.group(3).removeprefix("input_layer")) if m.group(3) else 1
            norms[layer] = tuple(np.array([float(v) for v in g.split(",")], np.float32) for g in m.group(1, 2))
    path = Path(args.calib_set_path)
    if path.suffix == ".npz":
        data = np.load(path)
        calib = {k: data[f"{net}/input_layer{k}"] for k in range(1, len(inputs) + 1) if f"{net}/input_layer{k}" in data}
    else:
        calib = {1: np.load(path)}
    if sorted(calib) != list(range(1, len(inputs) + 1)):
        fail(f"calibration set {path} provides inputs {sorted(calib)}, the network has {len(inputs)}")
    feeds = []
    quant_in = []
    for k, (name, shape) in enumerate(inputs, start=1):
        expected = stream_shape(shape)
        data = calib[k]
        if list(data.shape[1:]) != expected or data.dtype != np.float32:
            fail(f"calibration data for input_layer{k} is {data.dtype}{data.shape}, expected float32 (N, "
                 f"{', '.join(map(str, expected))})")
        quant_in.append(qparams(float(data.min()), float(data.max())))
        x = data[:CALIB_SAMPLES]
        if k in norms:
            x = (x - norms[k][0]) / norms[k][1]
        if len(shape) == 4:
            x = x.transpose(0, 3, 1, 2)
        feeds.append((name, np.ascontiguousarray(x, np.float32).reshape(-1, *shape[1:])))
    samples = [{name: x[i:i + 1] for name, x in feeds} for i in range(len(feeds[0][1]))]
    if os.environ.get("FAKE_DFC_QUANTIZE_INSIDE") == "1":
        har["onnx"] = quantize_inside(har["onnx"], samples, Path(args.output_har_path).with_suffix(".int8.onnx"))
    session = ort.InferenceSession(har["onnx"], providers=["CPUExecutionProvider"])
    results = [session.run(None, sample) for sample in samples]
    quant_out = [qparams(min(float(r[j].min()) for r in results), max(float(r[j].max()) for r in results),
                         2 ** output_bits - 1) for j in range(len(har["outputs"]))]
    har.update(quant_in=quant_in, quant_out=quant_out, output_bits=output_bits,
               normalization={str(k): [v.tolist() for v in mv] for k, mv in norms.items()})
    Path(args.output_har_path).write_text(json.dumps(har))


def quantize_inside(source: str, samples: list[dict[str, np.ndarray]], target: Path) -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.samples, None)

    quantize_static(source, str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return str(target.resolve())


def compiler(args: argparse.Namespace) -> None:
    har = json.loads(Path(args.har).read_text())
    if "quant_in" not in har:
        fail("the HAR is not optimized; run hailo optimize first")
    net = har["net"]
    norms = har["normalization"]
    made_for = HAILORT_OF_DFC[release(dfc_version())]
    hef = {"fake_hef_version": 1, "arch": args.hw_arch or har["arch"], "network_group": net, "onnx": har["onnx"],
           "hailort_release": ".".join(map(str, made_for)),
           "inputs": [{"name": f"{net}/input_layer{k}", "onnx_name": name, "shape": stream_shape(shape),
                       "quant": q, "normalization": None if str(k) not in norms else
                       {"mean": norms[str(k)][0], "std": norms[str(k)][1]}}
                      for k, ((name, shape), q) in enumerate(zip(har["inputs"], har["quant_in"], strict=True), 1)],
           "outputs": [{"name": f"{net}/conv_out{k}", "onnx_name": name, "shape": stream_shape(shape), "quant": q,
                        "bits": har["output_bits"]}
                       for k, ((name, shape), q) in enumerate(zip(har["outputs"], har["quant_out"], strict=True), 1)]}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{net}.hef").write_text(json.dumps(hef))


def dfc_version() -> str:
    return os.environ.get("FAKE_DFC_VERSION", "3.33.0")


def main(argv: list[str] | None = None) -> None:
    print(f"[info] Hailo DFC Version: {dfc_version()}")
    print("[info] HailoRT Version: Not Installed")
    top = argparse.ArgumentParser(prog="hailo")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parser").add_subparsers(dest="framework", required=True).add_parser("onnx")
    p.add_argument("model")
    p.add_argument("--hw-arch", required=True)
    p.add_argument("--net-name", required=True)
    p.add_argument("--har-path", required=True)
    p.add_argument("-y", action="store_true")
    p.set_defaults(func=parser)
    o = sub.add_parser("optimize")
    o.add_argument("har")
    o.add_argument("--hw-arch", required=True)
    o.add_argument("--calib-set-path", required=True)
    o.add_argument("--model-script", required=True)
    o.add_argument("--output-har-path", required=True)
    o.set_defaults(func=optimize)
    c = sub.add_parser("compiler")
    c.add_argument("har")
    c.add_argument("--hw-arch")
    c.add_argument("--output-dir", required=True)
    c.set_defaults(func=compiler)
    args = top.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
