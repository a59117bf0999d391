"""Sharded MS-PIE steps on 8 fake CPU devices (in a subprocess: the device count is fixed at
JAX start-up): per-device statistics equal a shard-by-shard 1-device emulation with averaged
gradients; global statistics equal the plain 1-device step of the whole batch; k accumulation
passes per device equal the 1-pass step on k times the devices; with ADA, each device augments
its own shard and r_t is averaged over all of them; the step's D and G halves as two programs
(the CPU loop's form) equal the one-program step."""

import os
import pathlib
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("forms", [["accumulate", "no-global"], ["conv_impl=xla", "augment"]],
                         ids=["cpu-forms", "xla-conv-ada"])
def test_sharded_steps_on_8_fake_devices(forms):
    """The sharded steps run their lazy terms behind lax.cond (the accelerator form) in both
    cases (the global-statistics step in the second only); the second also uses XLA's convolutions, as GPUs and TPUs do, with ADA's augmentation
    of everything D sees (each device draws its own; r_t is the mean over all devices)."""
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    script = pathlib.Path(__file__).with_name("_sharded_check.py")
    r = subprocess.run([sys.executable, str(script)] + forms, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "OK per-device" in r.stdout and "OK halves" in r.stdout and ("OK global" in r.stdout) == ("no-global" not in forms)
    assert ("OK accumulation" in r.stdout) == ("accumulate" in forms)
    assert ("OK augmented per-device" in r.stdout) == ("augment" in forms)
