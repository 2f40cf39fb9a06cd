"""The one device resolver (:mod:`vmgga.device`)."""

from __future__ import annotations

import pytest
import torch

from vmgga.device import check_device_name, resolve_device
from vmgga.errors import ConfigError


def test_auto_follows_what_torch_sees():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cpu_passes_through():
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without an Apple GPU")
def test_mps_without_an_apple_gpu_is_refused():
    with pytest.raises(ConfigError, match="no Apple GPU"):
        resolve_device("mps")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "CPU", ""])
def test_other_names_are_refused_with_the_allowed_ones(name):
    with pytest.raises(ConfigError, match=rf"device={name!r} is not allowed; expected 'auto', 'cpu'"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused(name):
    with pytest.raises(ConfigError, match="built without CUDA|finds no usable GPU"):
        resolve_device(name)


def test_a_config_may_name_cuda_without_a_gpu_but_not_auto():
    assert check_device_name("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="device='auto' is not allowed; expected 'cpu'"):
        check_device_name("auto")
    assert check_device_name("auto", allow_auto=True) == "auto"
