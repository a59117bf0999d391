"""The base config of each family: every field the code reads, and no other.

An experiment (``experiments/<name>.py``) is ``stylegan2()`` or ``singan()`` plus its own values,
finished by ``finish(cfg, variant)``. Each field has one comment: what it is, its unit, and where
the reference (REFERENCE.md, the mmgeneration configs) sets it otherwise. ``tests/test_configs``
runs a tiny train + sample + evaluate of each family through a config that records what is read,
and fails on a field nobody reads or a read of a field that is not here.

Two fields are records, written by a run and never set by hand: ``compute_resolved`` (the
``compute`` section as resolved on the run's backend) and, for SinGAN, ``pyramid`` (the stage
sizes the run trained at). They are stored in the run's ``config.json`` beside the config.

The ``tiny`` variant keeps every switch of an experiment and shrinks its widths to the fixture
sizes (StyleGAN2: out_size 32, style 16, channels {4: 16, 8: 16, 16: 12, 32: 8}, SPE dim 8, batch
4; SinGAN: widths 16 / 8, 4 scales, a 40 px image, 20 iterations per stage): what the tests and
quick trials use.
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from pegan.compute import DEFAULTS as COMPUTE_DEFAULTS
from pegan.errors import InputError

__all__ = ["stylegan2", "singan", "finish", "SPE", "CSG", "TINY_CHANNELS", "VARIANTS", "RECORDS"]

VARIANTS = ("full", "tiny")
RECORDS = ("compute_resolved", "pyramid")    # written by a run into its config.json, never read as settings
TINY_CHANNELS = [[4, 16], [8, 16], [16, 12], [32, 8]]
# the sinusoidal positional encoding of the MS-PIE generators (REFERENCE §2.3) and the CSG grid
SPE = {"type": "SPE", "embedding_dim": 256, "padding_idx": 0, "init_size": 256, "center_shift": 100}
CSG = {"type": "CSG"}


def _compute() -> ml_collections.ConfigDict:
    # How the numbers are computed: 'auto' is resolved once at start-up for the backend, printed and
    # stored as compute_resolved (the table and the reasons are in pegan/compute.py):
    #   conv_impl        'xla' | 'taps'              auto: taps on CPU (XLA's CPU conv gradients are slow), xla elsewhere
    #   upfirdn_impl     'slices' | 'conv' | 'ref'   auto: slices (fuses everywhere)
    #   modconv_impl     'scale' | 'grouped' | 'vmap' auto: scale (one batched conv)
    #   resize_impl      'dense' | 'gather'          auto: dense (banded matmuls; gather's gradients are scatter-adds)
    #   lazy_branches    'cond' | 'static'           auto: static on CPU (lax.cond is slow there), cond elsewhere
    #   dtype            'float32' | 'bfloat16'      bfloat16: mixed precision with float32 parameters (StyleGAN2)
    #   matmul_precision 'default' | 'high' | 'highest'  auto: highest on GPU (no TF32, as NVIDIA trains
    #                    StyleGAN2), high on TPU, default on CPU (already exact float32)
    #   cpu_compile      'default' | 'lean' | 'quick'  auto: lean on CPU (XLA's loop fusion emitters: less compile
    #                    time, same speed), quick for tiny variants (also LLVM -O0); default elsewhere
    #   compile_cache    'auto' (~/.cache/pegan/jax; $JAX_COMPILATION_CACHE_DIR or $PEGAN_CACHE_DIR move it), a
    #                    directory, or '' (off): JAX's persistent compilation cache, so a restarted or
    #                    preempted run loads its programs instead of compiling them again
    return ml_collections.ConfigDict(dict(COMPUTE_DEFAULTS))


def stylegan2() -> ml_collections.ConfigDict:
    """StyleGAN2 / MS-PIE: the values of Tab.5 config-a (StyleGAN2 at 256 px on FFHQ, REFERENCE §1.1-1.3)."""
    c = ml_collections.ConfigDict()
    c.name = None                  # experiment name; None: the experiment file's stem
    c.family = "stylegan2"         # which model family the commands build
    c.variant = "full"             # 'full' (the released widths) or 'tiny' (fixture widths, see above)
    c.scales = [0]                 # chosen-scale offsets trained on (multi_input_scales): side (4 + s) * out_size / 4 px

    g = c.generator = ml_collections.ConfigDict()   # pegan.models.stylegan2.Generator
    g.out_size = 256               # px side at chosen scale 0 (config-b: 512)
    g.style_channels = 512         # width of the latent z and the style w
    g.num_mlps = 8                 # layers of the mapping network
    g.lr_mlp = 0.01                # equalized-lr multiplier of the mapping network
    g.channel_multiplier = 2       # StyleGAN2's channel table x2 from 64 px up ('c2'; 'c1' configs: 1)
    g.channels = None              # an explicit channel table [[px, channels], ...] instead (None: StyleGAN2's)
    g.head_pos_encoding = None     # input of the 4x4 head: None (learned constant), SPE or CSG (a dict, see SPE / CSG)
    g.head_pos_size = [4, 4]       # head grid at scale 0, px
    g.interp_head = False          # resize the head to larger scales instead of a larger encoding grid (c, e, h, j)
    g.no_pad = False               # convolutions without padding, 6x6 head (configs h-k)
    g.deconv2conv = False          # upsample + conv instead of the transposed conv (every MS-PIE config)
    g.up_after_conv = False        # with deconv2conv: conv, then upsample (c-g, f-896, f-1024); else resize first
    g.interp_pad = None            # px of extra size in that resize with no_pad (h-k: 4); None: none

    d = c.discriminator = ml_collections.ConfigDict()   # pegan.models.stylegan2.Discriminator
    d.in_size = 256                # px side its convolution stack is built for (= generator.out_size)
    d.channel_multiplier = 2       # as the generator's (the f-1024 config keeps 2 with a c1 generator)
    d.channels = None              # explicit channel table, as the generator's
    d.with_adaptive_pool = False   # adaptive average pool before the head: takes every scale (MS-PIE: True)
    d.pool_size = [2, 2]           # its output size, px
    d.mbstd_group_size = 4         # images per minibatch-stddev group
    d.mbstd_channel_groups = 1     # channel groups of the minibatch-stddev feature

    t = c.train = ml_collections.ConfigDict()      # the optimisation (REFERENCE §1.2-1.3)
    t.seed = 0                     # parameters, latents, noise, scale draws, data order and flips
    t.total_iters = 1_100_002      # steps of the run (the reference: 1,100,002)
    t.batch = 24                   # images per step over all devices and hosts (the reference: 8 GPUs x 3)
    t.batch_per_scale = None       # {"scale": batch} for chosen scales that take another batch; None: all t.batch
    t.batch_gpu = None             # images per device per pass (NVIDIA's --batch-gpu): gradient accumulation
                                   # over batch / devices / batch_gpu passes; None: one pass
    t.scale_sampling = "uniform"   # 'uniform' (what the reference does) or 'configured' (scale_probs)
    t.scale_probs = None           # per-scale probabilities for 'configured' (the reference sets, then ignores them)
    t.g_lr = 0.002 * 4 / 5         # generator Adam lr, scaled for lazy PL every 4 steps
    t.g_betas = [0.0, 0.99 ** (4 / 5)]      # its Adam betas, beta2 scaled alike
    t.d_lr = 0.002 * 16 / 17       # discriminator Adam lr, scaled for lazy R1 every 16 steps
    t.d_betas = [0.0, 0.99 ** (16 / 17)]    # its Adam betas
    t.adam_eps = 1e-8              # Adam epsilon of both
    t.r1_interval = 16             # steps between R1 penalties (lazy regularisation)
    t.r1_weight = 10.0 / 2 * 16    # weight of the R1 term: gamma 10 / 2 x interval
    t.pl_interval = 4              # steps between path-length penalties
    t.pl_weight = 2.0 * 4          # path-length weight 2 x interval
    t.pl_batch_shrink = 2          # the PL batch is batch / this
    t.pl_decay = 0.01              # running-mean decay of the path length
    t.pl_scale = 0                 # chosen scale of the PL term (the reference: always 0)
    t.pl_at_current_scale = False  # True: PL at the scale of the step instead (a fix, off by default)
    t.pl_detach_mean = False       # True: no gradient through the new running mean (the reference lets it flow)
    t.mix_prob = 0.9               # probability of style mixing in a generated batch
    t.ema_momentum = 0.5 ** (32 / (10 * 1000))   # generator EMA: half-life 10 kimg at batch 32
    t.regularisation = "joint"     # 'joint': R1 / PL in the same Adam step (the reference); 'separate': NVIDIA's
    t.statistics = "per_device"    # minibatch-stddev groups and PL mean per device (the reference) or 'global'
    t.augment = "none"             # what D sees: 'none' (the reference), 'ada' (NVIDIA's adaptive 'bgc'
                                   # augmentation, p from 0), or 'fixed:P' (the same at a constant p, e.g. fixed:0.2)
    t.ada_target = 0.6             # ADA's target of r_t = E[sign(D(real))] (NVIDIA: 0.6)
    t.ada_interval = 4             # steps between adjustments of p (NVIDIA: 4)
    t.ada_kimg = 500.0             # kimg over which p could go from 0 to 1 (NVIDIA: 500; small: faster)
    t.init_from = None             # start from another model: a pegan checkpoint directory (a converted
                                   # release or a run) or a reference .pth; G, D, G_ema and the mean latent
                                   # are copied, optimiser states, step and data position start fresh
    t.reinit = []                  # with init_from, parts that start fresh instead: 'mapping', 'd_head'
    t.freeze_d = 0                 # FreezeD: the k input-side discriminator blocks keep their weights
    t.checkpoint_every = 10_000    # steps between checkpoints (0: only at the end)
    t.keep_checkpoints = 40        # checkpoints kept (None: all)
    t.sample_every = 10_000        # steps between sample grids at every scale (0: only at the end)
    t.log_every = 100              # steps between metric writes (console and TensorBoard)
    t.tensorboard = True           # write TensorBoard event files under WORKDIR/tensorboard

    data = c.data = ml_collections.ConfigDict()   # the training images
    data.path = None               # a `pegan prepare` dataset or a folder of images (required to train)
    data.hflip = True              # random horizontal flips (the reference: yes)
    data.on_error = "raise"        # an unreadable image in a folder: 'raise', or 'skip' (counted)

    e = c.eval = ml_collections.ConfigDict()       # metrics during training, and `pegan evaluate`'s default scale
    e.metrics = ""                 # e.g. 'fid10k' or 'fid10k,pr1k' ('' none); see `pegan evaluate`
    e.every = 10_000               # steps between evaluations
    e.scale = None                 # chosen scale of the metrics; None: the largest of `scales` (where the paper reports)
    e.real = None                  # real images or a FID statistics file; None: data.path
    e.batch = 16                   # images per evaluation step
    e.inception = None             # pt_inception-2015-12-05-6726825d.pth (None: $PEGAN_INCEPTION_WEIGHTS)
    e.vgg16 = None                 # vgg16-397923af.pth for P&R (None: $PEGAN_VGG16_WEIGHTS)

    c.compute = _compute()         # how the numbers are computed (fields described in _compute)
    return c


def singan() -> ml_collections.ConfigDict:
    """PE-SinGAN: the values of ``singan_interp-pad_balloons`` (REFERENCE §1.4, §2.16-2.17)."""
    c = ml_collections.ConfigDict()
    c.name = None                  # experiment name; None: the experiment file's stem
    c.family = "singan"            # which model family the commands build
    c.variant = "full"             # 'full' or 'tiny' (see above)

    g = c.generator = ml_collections.ConfigDict()   # pegan.models.singan.SinGANGenerator
    g.num_scales = 8               # stages - 1 (set from the image's pyramid when training)
    g.base_channels = 32           # width of the coarsest blocks
    g.min_feat_channels = 32       # least width of any block
    g.padding = 0                  # zero padding inside the blocks (the PE configs: 1)
    g.pad_at_head = True           # pad the input once at the head (interp-pad configs)
    g.interp_pad = True            # bicubic-resize the previous stage with the padding (interp-pad configs)
    g.noise_with_pad = True        # noise drawn at the padded size (interp-pad configs)
    g.positional_encoding = None   # stage-0 encoding: None, CSG or SPE (a dict)
    g.first_stage_in_channels = None   # channels entering stage 0 (with a PE: its channels); None: 3

    d = c.discriminator = ml_collections.ConfigDict()   # pegan.models.singan.SinGANDiscriminator
    d.num_scales = 8               # as the generator's
    d.base_channels = 32           # as the generator's
    d.min_feat_channels = 32       # as the generator's
    d.use_bn = True                # BatchNorm in the discriminator blocks ('disc-nobn' configs: False)

    data = c.data = ml_collections.ConfigDict()    # the one training image and its pyramid
    data.image = None              # the image file (required to train)
    data.max_size = 250            # px of its long side at the finest stage
    data.min_size = 25             # px of the short side at the coarsest stage
    data.scale_factor = 0.75       # size ratio of neighbouring stages

    n = c.noise = ml_collections.ConfigDict()      # the fixed (reconstruction) noises and their amplitudes
    n.first_fixed_noises_ch = 1    # channels of the stage-0 fixed noise
    n.fixed_noise_with_pad = True  # fixed noises drawn at the padded size
    n.noise_weight_init = 0.1      # amplitude = this x RMSE of the reconstruction
    n.amplitude = "first_iteration"   # when the next stage's amplitude is measured ('first_iteration' as the
    #                                   reference, or 'last_iteration')

    t = c.train = ml_collections.ConfigDict()
    t.seed = 0                     # parameters, noises and every draw
    t.iters_per_scale = 2000       # iterations per stage, each d_steps D + g_steps G steps
    t.d_steps = 3                  # discriminator steps per iteration
    t.g_steps = 3                  # generator steps per iteration
    t.lr_g = 5e-4                  # Adam lr of each stage's generator block
    t.lr_d = 5e-4                  # Adam lr of each stage's discriminator
    t.betas = [0.5, 0.999]         # Adam betas of both
    t.lr_milestones = [1600]       # iterations of a stage after which the lr is multiplied by lr_gamma
    t.lr_gamma = 0.1               # lr factor at each milestone
    t.gp_weight = 0.1              # WGAN-GP weight
    t.rec_weight = 10.0            # reconstruction loss weight

    c.compute = _compute()         # how the numbers are computed (fields described in _compute)
    return c


def _tiny(c) -> None:
    if c.family == "stylegan2":
        c.generator.update(out_size=32, style_channels=16, channels=[list(r) for r in TINY_CHANNELS])
        c.discriminator.update(in_size=32, channels=[list(r) for r in TINY_CHANNELS])
        pe = c.generator.head_pos_encoding
        if pe is not None and pe.get("type") == "SPE":
            pe.embedding_dim = 8
        c.train.batch = 4
    else:
        c.generator.update(num_scales=4, base_channels=16, min_feat_channels=8)
        c.discriminator.update(num_scales=4, base_channels=16, min_feat_channels=8)
        c.data.update(max_size=40, min_size=12)
        c.train.update(iters_per_scale=20, lr_milestones=[16])


def finish(c, variant: Optional[str] = None) -> ml_collections.ConfigDict:
    """The experiment ``c`` as ``variant`` ('full', the default, or 'tiny')."""
    variant = variant or "full"
    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; use 'full' or 'tiny'")
    c.variant = variant
    if variant == "tiny":
        _tiny(c)
    return c
