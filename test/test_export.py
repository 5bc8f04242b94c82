"""Deploy bundle: export, round trip, ONNX parity, and refusal of damaged bundles."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from bundle_helpers import tiny_policy_artifacts

from act_policy import BackendError, CheckpointError, load_policy
from act_policy.backends import BackendOptions, ModelInputs, create_backend
from act_policy.backends.torch_fp32 import build_prepared_model
from act_policy.core.macs import MacCount, count_macs, macs_per_inference
from act_policy.core.policy import Policy
from act_policy.core.synthetic import synthetic_observations
from act_policy.export import export_bundle, load_bundle
from act_policy.export.bundle import (
    FP32_GRAPH,
    HEAD_GRAPH,
    HEAD_INT8_GRAPH,
    INT8_GRAPH,
    MACS_FIELD,
    POLICY_FILE,
    WEIGHTS_FILE,
    backbone_file,
)
from act_policy.hailo.kit import SCRIPT
from act_policy.tools.cli import main


@pytest.fixture
def bundle(tiny_bundle: Path) -> Path:
    return tiny_bundle


@pytest.fixture
def copy(bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle that a test may damage."""
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def observations(policy: Policy, count: int = 3, seed: int = 5) -> list[dict[str, np.ndarray]]:
    return list(synthetic_observations(policy.spec, policy.artifacts.input_stats, count, seed=seed))


def test_bundle_loads_without_the_checkpoint_and_predicts_identically(bundle: Path) -> None:
    original = Policy(tiny_policy_artifacts(), create_backend("cpu_fp32", tiny_policy_artifacts()))
    loaded = load_policy(bundle, backend="cpu_fp32")
    assert loaded.artifacts.source == bundle
    assert loaded.spec == original.spec
    for obs in observations(original):
        np.testing.assert_array_equal(loaded.predict_chunk(obs), original.predict_chunk(obs))


def test_policy_json_describes_the_policy_and_hashes_every_file(bundle: Path) -> None:
    doc = json.loads((bundle / POLICY_FILE).read_text())
    spec = tiny_policy_artifacts().spec
    assert doc["schema_version"] == 1
    assert doc["camera_order"] == [f.name for f in spec.cameras]
    assert doc["config"]["chunk_size"] == spec.config.chunk_size
    assert doc["config"]["n_action_steps"] == spec.config.n_action_steps
    assert [f["name"] for f in doc["inputs"]] == [f.name for f in spec.inputs]
    assert doc["action"]["shape"] == [spec.action_dim]
    assert set(doc["normalization"]["action_stats"]["action"]) >= {"mean", "std"}
    assert set(doc["files"]) == {WEIGHTS_FILE, FP32_GRAPH, HEAD_GRAPH, backbone_file(64, 80)}
    assert all(len(sha) == 64 for sha in doc["files"].values())


def test_policy_json_records_the_macs_counted_on_the_torch_model(bundle: Path) -> None:
    recorded = json.loads((bundle / POLICY_FILE).read_text())[MACS_FIELD]
    assert recorded == count_macs(build_prepared_model(tiny_policy_artifacts())) > 0
    assert macs_per_inference(load_bundle(bundle)) == MacCount(recorded, "recorded in policy.json at export")


def test_a_bundle_exported_before_macs_were_recorded_loads_and_torch_counts_them(copy: Path) -> None:
    path = copy / POLICY_FILE
    doc = json.loads(path.read_text())
    recorded = doc.pop(MACS_FIELD)
    path.write_text(json.dumps(doc))
    artifacts = load_bundle(copy)
    assert artifacts.macs_per_inference is None
    assert macs_per_inference(artifacts) == MacCount(recorded, "counted on the torch model")


@pytest.mark.parametrize("value", [-1, 1.5, "many", True])
def test_a_recorded_mac_count_that_is_not_a_whole_number_is_refused(copy: Path, value: object) -> None:
    path = copy / POLICY_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), MACS_FIELD: value}))
    with pytest.raises(CheckpointError, match=rf"{POLICY_FILE}: '{MACS_FIELD}' must be a whole number >= 0 "
                                              rf"\(or absent\), got {re.escape(repr(value))}$"):
        load_bundle(copy)


def test_onnx_fp32_matches_torch_within_1e4(bundle: Path) -> None:
    torch_policy = load_policy(bundle, backend="cpu_fp32", num_threads=1)
    onnx_policy = load_policy(bundle, backend="onnx_fp32", num_threads=1)
    for obs in observations(torch_policy, seed=9):
        inputs = torch_policy.preprocess(obs)
        np.testing.assert_allclose(onnx_policy.backend.infer(inputs), torch_policy.backend.infer(inputs),
                                   rtol=0, atol=1e-4)


def test_backbone_then_head_equals_the_whole_network(bundle: Path) -> None:
    policy = load_policy(bundle, backend="onnx_fp32", num_threads=1)
    inputs: ModelInputs = policy.preprocess(observations(policy, 1)[0])
    backbone = ort.InferenceSession(str(bundle / backbone_file(64, 80)))
    head = ort.InferenceSession(str(bundle / HEAD_GRAPH))
    features = backbone.run(None, {"image": inputs.images[0]})[0]
    names = [i.name for i in head.get_inputs()]
    assert names == [f"{policy.camera_names[0]}.features", "observation.state"]
    chunk = head.run(None, {names[0]: features, names[1]: inputs.state})[0][0]
    np.testing.assert_allclose(chunk, policy.backend.infer(inputs), rtol=0, atol=1e-4)


@pytest.mark.parametrize("graph", [FP32_GRAPH, HEAD_GRAPH, backbone_file(64, 80)])
def test_graphs_are_static_opset17_ir8_and_contain_only_input_dependent_work(bundle: Path, graph: str) -> None:
    model = onnx.load(str(bundle / graph))
    assert model.ir_version <= 9
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for value in (*model.graph.input, *model.graph.output):
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), value.name
    reachable = {i.name for i in model.graph.input}
    for node in model.graph.node:  # nodes are topologically sorted
        assert any(i in reachable for i in node.input), f"{node.name} ({node.op_type}) does not depend on the inputs"
        reachable.update(node.output)


@pytest.fixture
def umask_002():
    """Ubuntu's user-private-group umask (not the usual 022, so a hard-coded 0o644 is caught too)."""
    old = os.umask(0o002)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_002")
def test_files_export_quantize_and_hailo_prepare_write_get_the_mode_of_any_new_file(tiny_checkpoint: Path,
                                                                                    tmp_path: Path) -> None:
    """A robot's service account must be able to read a bundle another user made: whatever the commands
    write has the mode the umask gives a plain new file or folder (the compile script also executable)."""
    (tmp_path / "plain_file").touch()
    (tmp_path / "plain_folder").mkdir()
    file_mode, folder_mode = (stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("plain_file", "plain_folder"))
    bundle, kit = tmp_path / "bundle", tmp_path / "kit"
    assert main(["export", str(tiny_checkpoint), "--out", str(bundle)]) == 0
    assert main(["quantize", str(bundle), "--samples", "2"]) == 0
    assert main(["hailo-prepare", str(bundle), "--arch", "hailo8l", "--out", str(kit), "--calib", "synthetic",
                 "--calib-size", "2"]) == 0

    written = [bundle, kit, *bundle.rglob("*"), *kit.rglob("*")]
    modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode) for p in written}
    expected = {p.relative_to(tmp_path): folder_mode if p.is_dir() else file_mode for p in written}
    expected[Path("kit", SCRIPT)] = folder_mode  # rwx where a plain file has rw-
    assert Path("bundle", WEIGHTS_FILE) in modes and Path("bundle", "act_int8.onnx") in modes
    assert modes == expected


def test_export_refuses_to_overwrite_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        export_bundle(tiny_policy_artifacts(), tmp_path, progress=lambda _: None)


def test_missing_weights_file_is_named_when_a_torch_backend_loads(copy: Path) -> None:
    (copy / WEIGHTS_FILE).unlink()
    load_policy(copy, backend="onnx_fp32")  # runs the graph: the torch weights are never read
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: file listed in policy.json is missing"):
        load_policy(copy, backend="cpu_fp32")


def test_every_command_names_a_listed_file_a_bundle_lost_and_what_writes_it_again(
        tiny_quantized_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bundle = Path(shutil.copytree(tiny_quantized_bundle, tmp_path / "bundle"))
    (bundle / HEAD_INT8_GRAPH).unlink()
    (bundle / INT8_GRAPH).unlink()

    def refused(*argv: str) -> str:
        assert main([*argv]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return " ".join(err.split())

    quantize = f"run `act-policy quantize {bundle}"
    demo = refused("demo", "--checkpoint", str(bundle), "--backend", "cpu_int8", "--duration", "0.1")
    assert f"{bundle / INT8_GRAPH}: file listed in policy.json is missing: the bundle is damaged" in demo
    assert f"{quantize}` to write it again" in demo
    # quantize rewrites act_int8.onnx, but not head_int8.onnx without --head: refused before calibrating
    plain = refused("quantize", str(bundle), "--samples", "2")
    assert f"lists ['{HEAD_INT8_GRAPH}'], missing from {bundle}" in plain and f"{quantize} --head`" in plain
    assert main(["quantize", str(bundle), "--samples", "2", "--head"]) == 0  # as the error says: repaired
    load_policy(bundle, backend="cpu_int8")

    (bundle / WEIGHTS_FILE).unlink()  # only export writes the weights
    info = refused("info", str(bundle))
    assert f"{bundle / WEIGHTS_FILE}: file listed in policy.json is missing" in info
    assert "copy it again, or export it again (and quantize it again if it was)" in info


def test_changed_graph_fails_its_sha256_check_when_its_backend_loads(copy: Path) -> None:
    data = bytearray((copy / FP32_GRAPH).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / FP32_GRAPH).write_bytes(bytes(data))
    load_policy(copy, backend="cpu_fp32")  # does not use the graph
    with pytest.raises(CheckpointError, match=rf"{FP32_GRAPH}: sha256 .* does not match"):
        load_policy(copy, backend="onnx_fp32")


def test_truncated_weights_fail_the_sha256_check(copy: Path) -> None:
    data = (copy / WEIGHTS_FILE).read_bytes()
    (copy / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: sha256"):
        dict(load_bundle(copy).weights)


def test_corrupt_or_unknown_policy_json_is_reported(copy: Path) -> None:
    path = copy / POLICY_FILE
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(CheckpointError, match="schema_version 99 is not supported"):
        load_bundle(copy)
    path.write_text("{ not json")
    with pytest.raises(CheckpointError, match=f"{POLICY_FILE}: not valid JSON"):
        load_bundle(copy)


def test_int8_backend_on_unquantized_bundle_says_to_run_quantize(bundle: Path) -> None:
    with pytest.raises(CheckpointError, match="act-policy quantize"):
        load_policy(bundle, backend="cpu_int8")


def test_onnx_backends_on_a_plain_checkpoint_say_to_run_export(tiny_checkpoint: Path) -> None:
    with pytest.raises(BackendError, match="act-policy export"):
        load_policy(tiny_checkpoint, backend="onnx_fp32")


def test_onnx_backend_uses_the_requested_threads_and_refuses_gpus(bundle: Path) -> None:
    artifacts = load_bundle(bundle)
    backend = create_backend("onnx_fp32", artifacts, BackendOptions(num_threads=1))
    assert backend.session.get_session_options().intra_op_num_threads == 1
    assert backend.describe()["threads"] == 1
    with pytest.raises(BackendError, match="CPU only"):
        create_backend("onnx_fp32", artifacts, BackendOptions(device="cuda"))
