"""pegan: Positional Encoding as Spatial Inductive Bias in GANs (Xu et al., CVPR 2021) in JAX/Flax.

Submodules are imported on demand so that ``from pegan import encodings`` pulls in nothing
but the encodings (no training, data or checkpoint code). The layers (``encodings``, ``ops``,
``nn``, ``models``) need only jax, flax and numpy; the rest needs an extra (``pegan[convert]``, ``[video]``,
``[eval]``, ``[train]``, ``[demo]``, ``[all]``; ``pegan._extras``) and says so in one line.
"""

__version__ = "0.1.0"
