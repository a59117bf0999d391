"""The reference figures the benchmark compares with, as data, per platform.

``cpu``: OpenMMLab's PyTorch code on this machine kind (2 threads, float32, median of 5 after
warm-up): seconds, GFLOP/s, pegan's target seconds and the reference's peak host GB. A time is
compared after normalisation to the matmul rate of the run (``REF_MATMUL_GFLOPS``: the float32
4096 x 4096 matmul on the reference machine), on CPU only: a shared CPU's speed varies, an
accelerator's does not.
"""

REF_MATMUL_GFLOPS = 141.0

REFERENCE = {  # cpu
    "matmul": dict(seconds=2 * 4096 ** 3 / 141e9, gflops=141.0),
    "gfwd:f:0:4": dict(seconds=4.63, gflops=78, target=3.6),
    "gfwd:f:4:4": dict(seconds=17.6, gflops=82, target=13.5),
    "gfwd:h:0:4": dict(seconds=7.67, gflops=90, target=5.9),
    "dfwd:0:4": dict(seconds=7.54, gflops=50, target=3.8),
    "dstep:nor1:0:3": dict(seconds=36.0, gflops=54, target=24.0, mem_gb=5.8),
    "dstep:r1:0:3": dict(seconds=70.0, gflops=52, target=47.0, mem_gb=8.5),
    "gstep:nopl:0:3": dict(seconds=23.1, gflops=83, target=15.4),
    "gstep:pl:0:3": dict(seconds=25.6, gflops=106, target=17.0, mem_gb=7.7),
    "iter:0:3": dict(seconds=61.8, target=41.0, compile_target=60.0),
    "singan_iter": dict(seconds=25.7, gflops=110, target=25.7),
    "singan_sample": dict(seconds=0.46, target=0.46),
}

PLATFORMS = {"cpu": REFERENCE}
