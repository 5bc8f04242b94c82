"""CPU backends beyond the torch reference: torch_dynamic_int8 (the seed's recipe) and its engine choice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from bundle_helpers import tiny_policy_artifacts

from act_policy import BackendError
from act_policy.backends import BackendOptions, create_backend
from act_policy.backends import torch_dynamic_int8 as dyn
from act_policy.core.policy import Policy
from act_policy.export.fidelity import compare, held_out_observations


def test_dynamic_int8_quantizes_linear_layers_and_stays_close_to_float() -> None:
    artifacts = tiny_policy_artifacts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = create_backend("torch_dynamic_int8", artifacts, BackendOptions(num_threads=1))
    assert not [w for w in caught if "deprecated" in str(w.message)]
    assert type(backend.model.action_head).__module__.startswith("torch.ao.nn.quantized.dynamic")
    info = backend.describe()
    assert info["quantized_engine"] in ("qnnpack", "x86", "fbgemm") and "deprecated_api" in info
    int8, reference = Policy(artifacts, backend), Policy(artifacts, create_backend("cpu_fp32", artifacts))
    observations = held_out_observations(artifacts, 3)
    errors = compare([reference.predict_chunk(o) for o in observations],
                     [int8.predict_chunk(o) for o in observations], artifacts)
    assert 0 < errors["rel_l2"] < 0.05


@pytest.mark.parametrize(("machine", "engine"), [("aarch64", "qnnpack"), ("x86_64", "x86"), ("AMD64", "x86")])
def test_engine_is_qnnpack_on_arm_and_x86_elsewhere(machine: str, engine: str) -> None:
    assert dyn.quantized_engine(machine, ["qnnpack", "onednn", "x86", "fbgemm"]) == engine


def test_older_x86_builds_fall_back_to_fbgemm() -> None:
    assert dyn.quantized_engine("x86_64", ["qnnpack", "fbgemm"]) == "fbgemm"


def test_engine_missing_from_the_torch_build_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="none of"):
        dyn.quantized_engine("aarch64", ["none"])


def test_dynamic_int8_refuses_gpus() -> None:
    with pytest.raises(BackendError, match="CPU only"):
        create_backend("torch_dynamic_int8", tiny_policy_artifacts(), BackendOptions(device="cuda"))


def test_compare_reports_errors_in_action_units_and_normalized() -> None:
    artifacts = tiny_policy_artifacts()
    std = artifacts.action_stats["action"]["std"]
    reference = [np.tile(artifacts.action_stats["action"]["mean"] + std, (10, 1))]
    shifted = [reference[0] + 0.1 * std]  # 0.1 in normalized units everywhere
    errors = compare(reference, shifted, artifacts)
    assert errors["max_abs"] == pytest.approx(0.1 * std.max(), rel=1e-5)
    assert errors["rel_l2_normalized"] == pytest.approx(0.1, rel=1e-4)
