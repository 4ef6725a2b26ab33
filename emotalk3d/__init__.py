"""emotalk3d: speech to a free-view, emotion-controllable 3D Gaussian talking head.

Shape glossary (used in every shape comment of the package):

    B    batch
    T    motion frames (25 fps unless configured)
    T_a  audio feature frames (50 Hz HuBERT frames)
    S    audio samples (16 kHz mono)
    P    sparse face points (the dataset's per-frame mesh vertices)
    V    dense face points (P after 4x midpoint subdivision)
    F    mesh triangles
    K    blendshapes (expression or identity modes)
    N    Gaussians
    C    cameras
    H W  image height and width in pixels
    E    emotion vector size (8 one-hot emotions scaled by intensity, plus the intensity)

Units: millimetres for geometry and camera translations; OpenCV camera convention
(x right, y down, z forward); world-to-camera 4x4 matrices and 3x3 pixel intrinsics.
"""

import os as _os

# OpenMP threads that spin while idle make torch's many small CPU ops 10-20x slower on small
# (2-vCPU) machines: measured 75-89 s vs 6 s for `emotalk3d data synth --size tiny`. Let them
# sleep instead. libgomp reads this when torch loads, so it must be set before `import torch`;
# the console scripts import this package first. An explicit user setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
