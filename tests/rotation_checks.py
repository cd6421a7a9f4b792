"""One comparison of rotations shared by the tests."""
import numpy as np
import torch

from engine.body import rotations as R


def rotation_error(aa_a, aa_b) -> float:
    """Largest angle (rad) between corresponding axis-angle rotations of two arrays (..., 3k)."""
    a = R.axis_angle_to_matrix(torch.as_tensor(np.asarray(aa_a), dtype=torch.float64).reshape(-1, 3))
    b = R.axis_angle_to_matrix(torch.as_tensor(np.asarray(aa_b), dtype=torch.float64).reshape(-1, 3))
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return float(torch.acos(cos.clamp(-1, 1)).max())
