"""Evaluation: FID Inception and precision/recall VGG16 in Flax, the metrics, ``pegan evaluate``.
Needs the 'eval' extra."""

from pegan._extras import require

require(extra="eval", by=__name__)
