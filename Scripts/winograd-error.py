#!/usr/bin/env python3
"""Float32 error of Winograd's F(2x2, 3x3), F(3x3, 3x3) and F(4x4, 3x3) on the CNN preset's second convolution.

Emulates each algorithm in float32 with numpy (kernel and input transforms, the channel sums, the
output transform, each rounded to float32) on 32 -> 64 channels over a 26x26 input, and prints the
worst error of the forward output against a float64 direct convolution, in the metric of
Tests/NNTests/NumpyReferenceTests (absolute, relative above 1 in magnitude; the issue allows 1e-5).
ddp-train runs F(2x2, 3x3) (Sources/Engine/Winograd.swift); this is why not a larger tile. Measured:
F(2x2, 3x3) 1.85e-06; F(3x3, 3x3) 1.81e-05 (points 0, 1, -1, 1/2) and 1.95e-05 (0, 1, -1, 2);
F(4x4, 3x3) 3.65e-05.
"""
import numpy as np

rng = np.random.default_rng(50)
C, K, H = 32, 64, 26
HO = H - 2
f32 = np.float32
x = rng.uniform(-1, 1, (C, H, H)).astype(f32)
w = rng.uniform(-0.5, 0.5, (K, C, 3, 3)).astype(f32)

reference = np.zeros((K, HO, HO))
for ki in range(3):
    for kj in range(3):
        reference += np.einsum("kc,chw->khw", w[:, :, ki, kj].astype(np.float64), x[:, ki:ki + HO, kj:kj + HO].astype(np.float64))


def worst_error(BT, G, AT, m):
    """y = A^T [(G g G^T) . (B^T d B)] A over m x m output tiles, every step rounded to float32."""
    a = BT.shape[0]
    BT, G, AT = BT.astype(f32), G.astype(f32), AT.astype(f32)
    U = np.einsum("ir,kcrs,js->ijkc", G, w, G).astype(f32)
    tiles = (HO + m - 1) // m
    xp = np.zeros((C, tiles * m + 2, tiles * m + 2), f32)
    xp[:, :H, :H] = x
    y = np.zeros((K, tiles * m, tiles * m), f32)
    for ty in range(tiles):
        for tx in range(tiles):
            V = np.einsum("ir,crs,js->ijc", BT, xp[:, ty * m:ty * m + a, tx * m:tx * m + a], BT).astype(f32)
            M = np.einsum("ijkc,ijc->ijk", U, V).astype(f32)
            y[:, ty * m:ty * m + m, tx * m:tx * m + m] = np.einsum("ai,ijk,bj->kab", AT, M, AT).astype(f32)
    y = y[:, :HO, :HO]
    return (np.abs(y - reference) / np.maximum(1, np.abs(reference))).max()


# Lavin and Gray's matrices.
BT2 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G2 = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
AT2 = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])



def toom_cook(points, m, r=3):
    """F(m, r) from interpolation points and infinity: A^T = E_m^T, G = E_r, B^T = E_n^-T for the
    evaluation matrices E_d (polynomials of d coefficients at the points; infinity takes the last),
    each point's scale moved from B^T to G."""
    n = m + r - 1
    pts = list(points) + [None]

    def evaluation(d):
        return np.array([[0.0] * (d - 1) + [1.0] if a is None else [a ** k for k in range(d)] for a in pts])

    scale = np.array([1.0 if a is None else np.prod([a - b for b in points if b != a]) for a in pts])
    return np.linalg.inv(evaluation(n)).T * scale[:, None], evaluation(r) / scale[:, None], evaluation(m).T


print("F(2x2,3x3) fp32 forward max error: %.2e" % worst_error(BT2, G2, AT2, 2))
for points in ([0, 1, -1, 0.5], [0, 1, -1, 2]):
    print("F(3x3,3x3) points %s fp32 forward max error: %.2e" % (points, worst_error(*toom_cook(points, 3), 3)))
print("F(4x4,3x3) fp32 forward max error: %.2e" % worst_error(BT4, G4, AT4, 4))
