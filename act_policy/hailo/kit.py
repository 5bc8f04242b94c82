"""The Hailo compile kit: one folder an x86_64 machine with the Dataflow Compiler turns into HEFs.

Layout::

    KIT/
      README.md            what to run where, and what comes back
      kit.json             manifest: arch, bundle, per model its files, cameras, input/output shapes
      hailo_compile.sh     hailo parser onnx → hailo optimize → hailo compiler, per model
      models/<name>/<name>.onnx   graph to compile (backbone per camera group; act_full with --full)
      models/<name>/calib.npy     calibration set, N×H×W×3 float32 raw RGB pixels 0–255 (calib.npz for act_full)
      models/<name>/model.alls    model script: on-chip normalization(...), 16-bit outputs, optimization level

Calibration data is raw pixels because the model script normalizes on the chip (see
:mod:`act_policy.hailo.layout`); a calibration set that was already normalized would be
normalized twice. Frames are streamed to disk, so a 480×640 kit does not need the whole set in memory.

Optimization level (what Hailo documents, and what the compiler does):

* levels 2 and 4 (fine-tuning / AdaRound) train the quantized network on 1024 calibration images;
  Hailo recommends "a GPU machine with dataset size of at least 1024 images" (hailo_model_zoo v2.18
  docs/OPTIMIZATION.rst line 49). Without a GPU the DFC lowers any level to 0 itself and logs
  "Reducing optimization level to 0 (the accuracy won't be optimized and compression won't be
  used) because there's no available GPU" (also "... less data than the recommended amount (1024),
  and there's no available GPU"); ``hailo_compile.sh`` detects that line and records the level that
  really ran in each HEF's sidecar.
* So by default (no explicit level) a model calibrated on at least :data:`FULL_DATASET` frames is
  asked for level 2, and one with fewer for level 0 (equalization and range calibration only) —
  the level it would get anyway. The full network follows the Model Zoo's DETR-ResNet18 recipe,
  which itself uses level 0.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from act_policy import __version__
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.dependencies import require_all
from act_policy.core.errors import CheckpointError
from act_policy.hailo.layout import FULL_MODEL, BackboneGroup, backbone_groups

KIT_MODULES = ("onnx",)  # what writing a kit imports beyond numpy (the graphs are edited with onnx)

ARCHES = ("hailo8l", "hailo8")
KIT_FILE = "kit.json"
SCRIPT = "hailo_compile.sh"
MAX_IR_VERSION = 8  # Hailo's ONNX checker has been reported to reject IR 10 (torch dynamo's default)
FULL_DATASET = 1024  # calibration images the DFC's level-2/4 algorithms train on (dataset_size=1024)
DEFAULT_CALIB_SIZE = FULL_DATASET
# Output layers in 16 bits: the backbone's 512-channel projection (and the full network's actions) feed
# float computations, where 8-bit steps would be the largest error left. hailo_model_zoo v2.18
# cfg/alls/generic/detr_resnet_v1_18_bn.alls line 15 does the same for DETR-ResNet18 on hailo8l.
OUTPUT_16BIT = "quantization_param({output_layer*}, precision_mode=a16_w16)"
# The rest of that recipe (same file, lines 2-9, 13 and 18-20), for the ResNet-18 + transformer network;
# its layer-specific lines (conv115/conv116: DETR's box head) have no counterpart in ACT and are left out.
DETR_RECIPE = (
    "post_quantization_optimization(bias_correction, policy=disabled)",
    "pre_quantization_optimization(equalization, policy=enabled)",
    "model_optimization_config(negative_exponent, layers={*}, rank=0)",
    "model_optimization_config(calibration, batch_size=8, calibset_size={frames})",
    "model_optimization_config(checker_cfg, policy=enabled, batch_size=1)",
    "quantization_param({ew_sub*}, activation_fit=disabled)",
    OUTPUT_16BIT,
    "allocator_param(enable_partial_row_buffers=disabled)",
    "context_switch_param(slotter_chances=600)",
    "allocator_param(timeout=43200)",
)
DETR_RECIPE_LEVEL = 0  # the recipe's model_optimization_flavor(optimization_level=0, compression_level=0)
Progress = Callable[[str], None]


@dataclass
class KitModel:
    name: str
    onnx: str  # relative to the kit
    calib: str
    alls: str
    cameras: list[str]
    inputs: dict[str, list[int]]  # ONNX input name -> shape
    outputs: dict[str, list[int]]
    calib_frames: int = 0
    optimization_level: int = 0  # requested in its model.alls; the DFC may still lower it (no GPU)


@dataclass
class KitManifest:
    arch: str
    bundle: str
    act_policy_version: str
    optimization_level: int | None  # as asked; None: chosen per model from its calibration frames
    normalization: str = "on-chip: model.alls normalization(); calibration and runtime input are raw RGB 0-255"
    models: list[KitModel] = field(default_factory=list)


def hailo_ready_onnx(source: Path, target: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Copy an ONNX graph for the DFC (IR version lowered if the opset allows); return its I/O shapes."""
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if model.ir_version > MAX_IR_VERSION:
        needed = helper.find_min_ir_version_for(list(model.opset_import))
        if needed > MAX_IR_VERSION:
            raise CheckpointError(f"{source}: opset {opset} needs IR version {needed}; Hailo's parser is known to "
                                  f"reject IR ≥ 10 — re-export the bundle at opset ≤ 17")
        model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(target))

    def shapes(values: Any) -> dict[str, list[int]]:
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    return shapes(model.graph.input), shapes(model.graph.output)


def _renamed(obs: Mapping[str, np.ndarray], artifacts: PolicyArtifacts) -> dict[str, np.ndarray]:
    rename = artifacts.spec.rename_map
    return {rename.get(k, k): v for k, v in obs.items()}


def _frame(obs: Mapping[str, np.ndarray], camera: str, shape: tuple[int, int, int]) -> np.ndarray:
    if camera not in obs:
        raise CheckpointError(f"calibration data has no {camera!r}; it provides {sorted(obs)}")
    frame = np.asarray(obs[camera])
    if frame.dtype != np.uint8 or frame.shape != shape:
        raise CheckpointError(f"calibration frame {camera!r}: expected uint8 {shape}, got {frame.dtype} {frame.shape}")
    return frame


class _CalibrationWriter:
    """Streams N×H×W×3 float32 frames into ``.npy`` files of known size, trimmed when the source runs out."""

    def __init__(self, paths: dict[str, Path], shapes: dict[str, tuple[int, ...]], capacity: int) -> None:
        self.paths, self.shapes, self.capacity = paths, shapes, capacity
        self.arrays = {k: np.lib.format.open_memmap(paths[k], mode="w+", dtype=np.float32,
                                                    shape=(capacity, *shapes[k])) for k in paths}
        self.count = dict.fromkeys(paths, 0)

    def full(self) -> bool:
        return all(n >= self.capacity for n in self.count.values())

    def add(self, key: str, value: np.ndarray) -> None:
        if self.count[key] < self.capacity:
            self.arrays[key][self.count[key]] = value
            self.count[key] += 1

    def finish(self) -> None:
        trimmed = {}
        for key, array in self.arrays.items():
            array.flush()
            if self.count[key] < self.capacity:
                trimmed[key] = np.array(array[:self.count[key]])
        self.arrays = {}  # unmap before rewriting a file that is shorter than the mapping
        for key, array in trimmed.items():
            np.save(self.paths[key], array)


def _model_script(model: KitModel, normalization: list[str]) -> str:
    """model.alls: on-chip normalization, then the backbone settings or the DETR recipe, then the level."""
    if model.name == FULL_MODEL:
        settings = [line.replace("{frames}", str(model.calib_frames)) for line in DETR_RECIPE]
    else:
        settings = [OUTPUT_16BIT]
    lines = [*normalization, *settings,
             f"model_optimization_flavor(optimization_level={model.optimization_level}, compression_level=0)"]
    return "\n".join(lines) + "\n"


def _level(requested: int | None, model: KitModel, progress: Progress) -> int:
    if requested is None:
        if model.name == FULL_MODEL:
            return DETR_RECIPE_LEVEL
        if model.calib_frames < FULL_DATASET:
            progress(f"{model.name}: {model.calib_frames} calibration frames (< {FULL_DATASET}): optimization level 0, "
                     f"plain 8-bit range calibration; give >= {FULL_DATASET} frames and compile on a GPU machine for "
                     "level 2")
            return 0
        return 2
    if requested > 0 and model.calib_frames < FULL_DATASET:
        progress(f"{model.name}: optimization level {requested} with only {model.calib_frames} calibration frames; "
                 f"Hailo's level-2/4 algorithms train on {FULL_DATASET} images and the DFC lowers the level to 0 "
                 "on a machine without a GPU")
    return requested


def write_kit(artifacts: PolicyArtifacts, out: str | Path, arch: str, calibration: Iterable[Mapping[str, np.ndarray]],
              *, full: bool = False, calib_size: int = DEFAULT_CALIB_SIZE, optimization_level: int | None = None,
              progress: Progress = lambda _: None, overwrite: bool = False) -> KitManifest:
    """Write the compile kit for the bundle ``artifacts`` was loaded from.

    ``calibration`` yields observations in the robot's naming (the policy's rename_map is
    applied), e.g. from a LeRobot dataset; at most ``calib_size`` frames per model are kept.
    ``optimization_level`` None chooses per model (see the module docstring); an explicit level
    is written as given. MissingDependencyError, before the kit folder is touched, without ``KIT_MODULES``.
    """
    require_all(KIT_MODULES, "writing a Hailo compile kit")  # before an existing kit is replaced
    from act_policy.export.bundle import FP32_GRAPH, backbone_file, read_policy_document, sha256_file, verified_file

    if arch not in ARCHES:
        raise CheckpointError(f"--arch {arch!r}: expected one of {ARCHES} (a Hailo-8L runs only hailo8l HEFs)")
    if optimization_level is not None and not 0 <= optimization_level <= 4:
        raise CheckpointError(f"optimization level {optimization_level}: expected 0–4")
    bundle = artifacts.source
    if bundle is None or not (bundle / "policy.json").is_file():
        raise CheckpointError(f"{bundle}: not a deploy bundle; run `act-policy export CHECKPOINT BUNDLE` first")
    spec = artifacts.spec
    if not spec.cameras:
        raise CheckpointError(f"{bundle}: the policy has no camera, so there is no backbone to put on the NPU")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(f"{out}: output folder exists and is not empty (pass --force)")
        if not (out / KIT_FILE).is_file():
            raise CheckpointError(f"{out}: refusing to overwrite a folder that is not a Hailo kit")
        shutil.rmtree(out)
    document = read_policy_document(bundle)
    manifest = KitManifest(arch, str(bundle.resolve()), __version__, optimization_level)
    groups = backbone_groups(artifacts)
    normalization: dict[str, list[str]] = {}  # model name -> its model script's normalization lines
    paths: dict[str, Path] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    sources: dict[str, str] = {}
    for group in groups:
        folder = out / "models" / group.name
        folder.mkdir(parents=True)
        source = verified_file(bundle, backbone_file(group.height, group.width), document)
        progress(f"{group.name}: {source.name} for cameras {', '.join(group.cameras)}")
        inputs, outputs = hailo_ready_onnx(source, folder / f"{group.name}.onnx")
        normalization[group.name] = [group.pixels.model_script_line("normalization1")]
        paths[group.name], shapes[group.name] = folder / "calib.npy", (group.height, group.width, 3)
        sources[group.name] = sha256_file(source)
        manifest.models.append(KitModel(group.name, f"models/{group.name}/{group.name}.onnx",
                                        f"models/{group.name}/calib.npy", f"models/{group.name}/model.alls",
                                        list(group.cameras), inputs, outputs))
    full_keys: list[str] = []
    if full:
        fp32 = verified_file(bundle, FP32_GRAPH, document)
        full_keys = _prepare_full(artifacts, out, groups, manifest, normalization, fp32, paths, shapes)
        sources[FULL_MODEL] = sha256_file(fp32)
    writer = _CalibrationWriter(paths, shapes, calib_size)
    input_norm = artifacts.input_normalizer()
    seen = 0
    for raw in calibration:
        obs = _renamed(raw, artifacts)
        for group in groups:
            for camera in group.cameras:
                writer.add(group.name, _frame(obs, camera, (group.height, group.width, 3)))
        if full:
            values = [_frame(obs, c.name, (c.shape[1], c.shape[2], 3)) for c in spec.cameras]
            values += [input_norm.normalize(f.name, np.asarray(obs[f.name], np.float32))
                       for f in (spec.state, spec.env_state) if f is not None]
            for key, value in zip(full_keys, values, strict=True):
                writer.add(key, value)
        seen += 1
        if writer.full():
            break
    writer.finish()
    if seen == 0:
        raise CheckpointError("the calibration source yielded no observations")
    for model in manifest.models:  # act_full's inputs are keyed "act_full/input_layerN"
        model.calib_frames = min(n for k, n in writer.count.items() if k.split("/")[0] == model.name)
        model.optimization_level = _level(optimization_level, model, progress)
        (out / model.alls).write_text(_model_script(model, normalization[model.name]))
    if full:
        _pack_full_calibration(out, full_keys, paths)
    _write_executable(out / SCRIPT, compile_script(manifest, sources))
    (out / KIT_FILE).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    (out / "README.md").write_text(kit_readme(manifest))
    progress(f"wrote {out} ({', '.join(f'{m.name}: {m.calib_frames} calibration frames' for m in manifest.models)})")
    return manifest


def _write_executable(path: Path, text: str) -> None:
    """Write ``text`` to a new file, executable by whoever the umask lets read it (0o755 under umask 022)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o777), "w") as f:
        f.write(text)


def _prepare_full(artifacts: PolicyArtifacts, out: Path, groups: list[BackboneGroup], manifest: KitManifest,
                  normalization: dict[str, list[str]], source: Path, paths: dict[str, Path],
                  shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The whole network as one model: image inputs normalized on chip, vectors calibrated normalized."""
    spec = artifacts.spec
    folder = out / "models" / FULL_MODEL
    folder.mkdir(parents=True)
    inputs, outputs = hailo_ready_onnx(source, folder / f"{FULL_MODEL}.onnx")
    pixels = {c: g.pixels for g in groups for c in g.cameras}
    lines, keys = [], []
    # The DFC names inputs input_layer1.. in ONNX input order: cameras first, then state, env state.
    for i, camera in enumerate(spec.cameras, start=1):
        lines.append(pixels[camera.name].model_script_line(f"norm_layer{i}", f"input_layer{i}"))
    vectors = [f for f in (spec.state, spec.env_state) if f is not None]
    for i, f in enumerate([*spec.cameras, *vectors], start=1):
        key = f"{FULL_MODEL}/input_layer{i}"
        keys.append(key)
        paths[key] = folder / f"calib_input_layer{i}.npy"
        shapes[key] = (f.shape[1], f.shape[2], 3) if f in spec.cameras else f.shape
    normalization[FULL_MODEL] = lines
    manifest.models.append(KitModel(FULL_MODEL, f"models/{FULL_MODEL}/{FULL_MODEL}.onnx",
                                    f"models/{FULL_MODEL}/calib.npz", f"models/{FULL_MODEL}/model.alls",
                                    [c.name for c in spec.cameras], inputs, outputs))
    return keys


def _pack_full_calibration(out: Path, keys: list[str], paths: dict[str, Path]) -> None:
    """One ``.npz`` keyed by the DFC's input layer names (multi-input calibration)."""
    folder = out / "models" / FULL_MODEL
    np.savez(folder / "calib.npz", **{k: np.load(paths[k]) for k in keys})
    for k in keys:
        paths[k].unlink()


def compile_script(manifest: KitManifest, sources: Mapping[str, str]) -> str:
    """``hailo_compile.sh``: the three DFC steps per model, with a clear message when one fails."""
    calls = "\n".join(f'compile_model {m.name} "{m.calib}" "{sources.get(m.name, "")}" {m.optimization_level} '
                      f'{m.calib_frames}' for m in manifest.models)
    return f"""#!/usr/bin/env bash
# Compiles this kit's ONNX graphs into HEFs for {manifest.arch} with the Hailo Dataflow Compiler (DFC).
# Generated by act-policy {manifest.act_policy_version} `hailo-prepare` from {manifest.bundle}.
# Run on x86_64 Linux inside the DFC's Python environment:  bash hailo_compile.sh [OUTPUT_DIR]
# Output: OUTPUT_DIR (default: ./hef)/<model>.hef plus <model>.hef.json: architecture, source graph hash,
# the DFC release (the robot refuses a HEF from a DFC newer than its HailoRT) and the optimization level
# that really ran (the DFC lowers it to 0 without a GPU).
set -euo pipefail

ARCH="{manifest.arch}"
KIT="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
OUT="$(mkdir -p "${{1:-$KIT/hef}}" && cd "${{1:-$KIT/hef}}" && pwd)"
LOGS="$KIT/logs"

die() {{ echo "hailo_compile.sh: error: $*" >&2; exit 1; }}

if ! command -v hailo >/dev/null 2>&1; then
    die "the 'hailo' command of the Hailo Dataflow Compiler is not on PATH. The DFC runs only on x86_64 Linux \\
(this machine: $(uname -m)); install hailo_dataflow_compiler from the Hailo Developer Zone into a Python venv \\
(or use the Hailo AI Software Suite docker image), activate it, and run this script again."
fi

hint() {{
    case "$1" in
        parser) echo "The DFC could not translate the ONNX graph. Backbones are plain Conv/Relu/MaxPool/Add graphs; \\
if this is the full model (act_full), its log names the node it stopped at; deploy with the hybrid mode (backbones \\
only) meanwhile." ;;
        optimize) echo "Quantization failed. The calibration set must be N x H x W x 3 float32 raw RGB 0-255 \\
(the model script normalizes on chip); check the log for the layer at fault." ;;
        compiler) echo "Compilation failed (resources or an unsupported layer placement); see the log." ;;
    esac
}}

step() {{
    local what="$1" model="$2"; shift 2
    local log="$LOGS/$model.$what.log"
    echo "[$model] hailo $what"
    if ! "$@" >"$log" 2>&1; then
        tail -n 25 "$log" >&2 || true
        die "step 'hailo $what' failed for $model (full log: $log). $(hint "$what")"
    fi
}}

# "[info] Hailo DFC Version: 3.33.0": the header every `hailo` command logs.
logged() {{ sed -n "s/.*$1: *\\([^[:cntrl:]]*[^[:space:]]\\).*/\\1/p" "$2" | head -n 1; }}

compile_model() {{
    local model="$1" calib="$2" source_sha="$3" level="$4" frames="$5"
    local dir="$KIT/models/$model" work="$KIT/build/$model"
    [ -f "$dir/$model.onnx" ] || die "$dir/$model.onnx is missing; regenerate the kit with act-policy hailo-prepare"
    [ -f "$KIT/$calib" ] || die "$KIT/$calib is missing; regenerate the kit with act-policy hailo-prepare"
    rm -rf "$work" && mkdir -p "$work/hef" "$LOGS"
    step parser "$model" hailo parser onnx "$dir/$model.onnx" --hw-arch "$ARCH" --net-name "$model" \\
        --har-path "$work/$model.har" -y
    step optimize "$model" hailo optimize "$work/$model.har" --hw-arch "$ARCH" --calib-set-path "$KIT/$calib" \\
        --model-script "$dir/model.alls" --output-har-path "$work/${{model}}_optimized.har"
    local ran="$level"
    if grep -q "Reducing optimization level to 0" "$LOGS/$model.optimize.log"; then
        ran=0
        echo "[$model] WARNING: the DFC lowered optimization level $level to 0 ($(grep -o "because.*" \\
"$LOGS/$model.optimize.log" | head -n 1)). Expect plain 8-bit range calibration; use a machine with a GPU \\
and >= {FULL_DATASET} calibration frames for level 2." >&2
    fi
    step compiler "$model" hailo compiler "$work/${{model}}_optimized.har" --hw-arch "$ARCH" --output-dir "$work/hef"
    local dfc hailort
    dfc="$(logged "Hailo DFC Version" "$LOGS/$model.parser.log")"
    hailort="$(logged "HailoRT Version" "$LOGS/$model.parser.log")"
    [ -n "$dfc" ] || echo "[$model] WARNING: no 'Hailo DFC Version' in $LOGS/$model.parser.log; the robot cannot \\
check that this HEF's compiler matches its HailoRT" >&2
    shopt -s nullglob
    local hefs=("$work"/hef/*.hef)
    shopt -u nullglob
    [ "${{#hefs[@]}}" -eq 1 ] || die "expected one .hef from 'hailo compiler' in $work/hef, found ${{#hefs[@]}}"
    mv "${{hefs[0]}}" "$OUT/$model.hef"
    local fmt='{{"arch": "%s", "model": "%s", "source_onnx_sha256": "%s", "dfc_version": "%s", '
    fmt+='"dfc_hailort_version": "%s", "optimization_level": %s, "optimization_level_ran": %s, '
    fmt+='"calibration_frames": %s}}\\n'
    # shellcheck disable=SC2059  # the format is ours
    printf "$fmt" "$ARCH" "$model" "$source_sha" "$dfc" "$hailort" "$level" "$ran" "$frames" > "$OUT/$model.hef.json"
    echo "[$model] wrote $OUT/$model.hef"
}}

{calls}
echo "done: copy $OUT/*.hef and *.hef.json into the bundle's hailo/ folder on the robot"
"""


def kit_readme(manifest: KitManifest) -> str:
    models = "\n".join(f"- `{m.name}`: cameras {', '.join(m.cameras)}; {m.calib_frames} calibration frames"
                       for m in manifest.models)
    levels = ", ".join(f"`{m.name}` {m.optimization_level}" for m in manifest.models)
    return f"""# Hailo compile kit ({manifest.arch})

Generated by `act-policy hailo-prepare` (act_policy {manifest.act_policy_version}) from
`{manifest.bundle}`.

Models:
{models}

## 1. Compile (x86_64 Linux with the Hailo Dataflow Compiler)

```bash
source ~/hailo_dfc_venv/bin/activate      # the venv where hailo_dataflow_compiler is installed
bash hailo_compile.sh                     # → hef/<model>.hef and hef/<model>.hef.json
```

Each model goes through `hailo parser onnx` → `hailo optimize` (calibration set + model script)
→ `hailo compiler`; logs are in `logs/`. A failing step stops the script with the log's tail
and a hint.

Normalization: {manifest.normalization}. The calibration files (`calib.npy`, N×H×W×3 float32)
therefore hold raw camera pixels; do not normalize them.

Use the DFC release made for the robot's HailoRT (DFC 3.28 ↔ HailoRT 4.18 … 3.33 ↔ 4.23): an older
HailoRT refuses HEFs from a newer DFC, and the robot checks the release recorded in `<model>.hef.json`.
Optimization levels above 0 need a GPU (and 1024 calibration frames for level 2); without one the DFC
runs level 0, and the script warns and records `optimization_level_ran`.

Optimization levels asked for: {levels}.

## 2. Deploy (Raspberry Pi 5 with AI Kit / AI HAT+; install as in act_policy's docs/hailo.md)

```bash
mkdir -p BUNDLE/hailo && cp hef/*.hef hef/*.hef.json BUNDLE/hailo/
act-policy benchmark BUNDLE --backends hailo,cpu_int8
```

`act_full` (if present) is the whole network in one HEF for `mode=full`, with a model script based
on the Model Zoo's DETR-ResNet18 recipe; the default `hybrid` mode needs only the backbone HEFs.
"""
