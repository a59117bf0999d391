"""Independent float64 NumPy implementations, written from the formulas in REFERENCE.md.

They share no code with pegan and use loops or dense matrices rather than gathers, so a
convention error in pegan (align_corners, padding order, grouping) shows up as a mismatch.
"""

import numpy as np


def interp_matrix(n_in, n_out, kind="bilinear", align_corners=True):
    """Dense [n_out, n_in] interpolation matrix following PyTorch's CPU formulas."""
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        if align_corners:
            src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = (o + 0.5) * n_in / n_out - 0.5
            if kind == "bilinear":
                src = max(src, 0.0)
        if kind == "bilinear":
            i0 = min(int(np.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            t = src - i0
            m[o, i0] += 1 - t
            m[o, i1] += t
        elif kind == "bicubic":
            a = -0.75
            f = int(np.floor(src))
            t = src - f
            for k, d in zip(range(-1, 3), (t + 1, t, 1 - t, 2 - t)):
                d = abs(d)
                if d <= 1:
                    w = (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
                else:
                    w = a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
                m[o, min(max(f + k, 0), n_in - 1)] += w
        elif kind == "nearest":
            m[o, min(int(np.floor(o * n_in / n_out)), n_in - 1)] = 1
    return m


def resize(x, size, kind="bilinear", align_corners=True):
    """x: [N, H, W, C] float64."""
    mh = interp_matrix(x.shape[1], size[0], kind, align_corners)
    mw = interp_matrix(x.shape[2], size[1], kind, align_corners)
    return np.einsum("oh,nhwc,pw->nopc", mh, x, mw)


def upfirdn2d(x, k, up, down, pad):
    """Literal loops: zero-insert, pad/crop, true convolution, decimate. x [N,H,W,C]."""
    (py0, py1), (px0, px1) = pad
    n, h, w, c = x.shape
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    big = np.zeros((n, h * up + max(py0, 0) + max(py1, 0), w * up + max(px0, 0) + max(px1, 0), c))
    big[:, max(py0, 0):max(py0, 0) + h * up, max(px0, 0):max(px0, 0) + w * up] = u
    big = big[:, max(-py0, 0):big.shape[1] - max(-py1, 0), max(-px0, 0):big.shape[2] - max(-px1, 0)]
    kh, kw = k.shape
    oh, ow = big.shape[1] - kh + 1, big.shape[2] - kw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            patch = big[:, i:i + kh, j:j + kw]
            # true convolution: flipped kernel
            out[:, i, j] = np.einsum("nhwc,hw->nc", patch, k[::-1, ::-1])
    return out[:, ::down, ::down]


def conv2d(x, w, pad):
    """Cross-correlation, x [N,H,W,I], w [kh,kw,I,O], zero pad."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = w.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwi,io->nhwo", x[:, i:i + oh, j:j + ow], w[i, j])
    return out


def conv_transpose2d(x, w, stride=2):
    """PyTorch conv_transpose2d by its definition: out[y*s+ky, x*s+kx] += x[y,x] w[ky,kx]."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    out = np.zeros((n, (h - 1) * stride + kh, (wd - 1) * stride + kw, co))
    for y in range(h):
        for xx in range(wd):
            out[:, y * stride:y * stride + kh, xx * stride:xx * stride + kw] += np.einsum(
                "ni,hwio->nhwo", x[:, y, xx], w)
    return out


def modulated_conv2d(x, w, s, demodulate=True, pad=1, up=None, interp_pad=None, eps=1e-8):
    """Per-sample weights exactly as REFERENCE §2.10, one conv per sample."""
    outs = []
    for n in range(x.shape[0]):
        wn = w * s[n][None, None, :, None]
        if demodulate:
            wn = wn / np.sqrt((wn ** 2).sum(axis=(0, 1, 2), keepdims=True) + eps)
        xn = x[n:n + 1]
        if up is None:
            y = conv2d(xn, wn, pad)
        elif up == "transposed":
            y = conv_transpose2d(xn, wn)
            k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4
            y = upfirdn2d(y, k, 1, 1, ((1, 1), (1, 1)))
        elif up == "after":
            y = conv2d(xn, wn, pad)
            y = resize(y, (2 * y.shape[1], 2 * y.shape[2]))
        elif up == "before":
            p = interp_pad or 0
            xr = resize(xn, (2 * xn.shape[1] + p, 2 * xn.shape[2] + p))
            y = conv2d(xr, wn, pad)
        outs.append(y)
    return np.concatenate(outs)


def minibatch_stddev_nchw(x, group_size=4, eps=1e-8):
    """The reference layer on NCHW input, channel_groups = 1."""
    n, c, h, w = x.shape
    g = min(n, group_size)
    y = x.reshape(g, -1, 1, c, h, w)
    y = np.sqrt(y.var(axis=0) + eps)                  # [n/g, 1, c, h, w]
    y = y.mean(axis=(2, 3, 4))                        # [n/g, 1]
    y = np.tile(y, (g, 1))[:, :, None, None] * np.ones((1, 1, h, w))
    return np.concatenate([x, y], axis=1)


def adaptive_avg_pool(x, out):
    n, h, w, c = x.shape
    res = np.zeros((n, out[0], out[1], c))
    for i in range(out[0]):
        h0, h1 = (i * h) // out[0], int(np.ceil((i + 1) * h / out[0]))
        for j in range(out[1]):
            w0, w1 = (j * w) // out[1], int(np.ceil((j + 1) * w / out[1]))
            res[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return res
