"""The reference figures the benchmark compares with, as data, per platform.

``cpu``: OpenMMLab's PyTorch code on this machine kind (2 threads, float32, median of 5 after
warm-up): seconds, GFLOP/s, pegan's target seconds and the reference's peak host GB. A time is
compared after normalisation to the matmul rate of the run (``REF_MATMUL_GFLOPS``: the float32
4096 x 4096 matmul on the reference machine), on CPU only: a shared CPU's speed varies, an
accelerator's does not.

``gpu``: NVIDIA's published StyleGAN2 training figures (``NVIDIA``) and the targets the prepared
GPU check (``scripts/device_check.py``) holds pegan to (``TARGETS``).
"""

REF_MATMUL_GFLOPS = 141.0

REFERENCE = {  # cpu
    "matmul": dict(seconds=2 * 4096 ** 3 / 141e9, gflops=141.0),
    # seconds on this machine kind, GFLOP/s, pegan's target seconds, the reference's peak host GB
    "gfwd:f:0:4": dict(seconds=4.63, gflops=78, target=3.6),
    "gfwd:f:4:4": dict(seconds=17.6, gflops=82, target=13.5),
    "gfwd:h:0:4": dict(seconds=7.67, gflops=90, target=5.9),
    "dfwd:0:4": dict(seconds=7.54, gflops=50, target=3.8),
    "dstep:nor1:0:3": dict(seconds=36.0, gflops=54, target=24.0, mem_gb=5.8),
    "dstep:r1:0:3": dict(seconds=70.0, gflops=52, target=47.0, mem_gb=8.5),
    "gstep:nopl:0:3": dict(seconds=23.1, gflops=83, target=15.4),
    "gstep:pl:0:3": dict(seconds=25.6, gflops=106, target=17.0, mem_gb=7.7),
    "iter:0:3": dict(seconds=61.8, target=41.0, compile_target=60.0),
    "singan_iter": dict(seconds=25.7, gflops=110, target=21.4),           # round two: 1.2x (was 1.0x)
    "singan_sample": dict(seconds=0.46, target=0.46),
}

# NVIDIA's figures (NVlabs/stylegan3 docs/configs.md; StyleGAN2, A100, s/kimg and GPU memory
# per GPU). Their networks run the 4 highest resolutions in float16 (num_fp16_res=4) and with
# --cbase=16384 at 256 px (half MS-PIE config-f's c2 widths from 64 px up); TF32 off.
NVIDIA = {
    "paper256": dict(gpus=8, s_per_kimg=2.47, gb=2.7, batch_per_gpu=8),
    "auto256_1gpu": dict(gpus=1, s_per_kimg=12.53, gb=4.5, batch_per_gpu=16),
    "paper512": dict(gpus=8, s_per_kimg=5.28, gb=6.7, batch_per_gpu=8),
    "auto512_1gpu": dict(gpus=1, s_per_kimg=41.06, gb=6.8, batch_per_gpu=8),
}
# the GPU check's targets: GPU-seconds per kimg at 256 px (8 x NVIDIA's paper256 = 19.76) and the
# loop's host-blocked fraction
TARGETS = {"s_per_kimg_256": NVIDIA["paper256"]["s_per_kimg"] * NVIDIA["paper256"]["gpus"],
           "host_blocked": 0.05}

# the figures each platform's runs are compared with
PLATFORMS = {"cpu": REFERENCE, "gpu": NVIDIA}
