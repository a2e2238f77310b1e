"""ShardDataset with a physics prior: the TIE plane of the stored image, cropped and transformed."""

import json

import numpy as np
import torch

import chromaqpi


def test_shard_dataset_prior_is_computed_on_the_stored_image_then_cropped(tiny_planes_dataset):
    from chromaqpi.datasets.augment import apply_transform
    from chromaqpi.datasets.torch_data import ShardDataset
    from chromaqpi.microscope import Microscope

    plain = ShardDataset(tiny_planes_dataset, crop=16, seed=3, with_params=True)
    with_prior = ShardDataset(tiny_planes_dataset, crop=16, seed=3, prior="tie")
    full = ShardDataset(tiny_planes_dataset, crop=None, augment=False, with_params=True)
    for i in range(4):
        a, b = plain[i], with_prior[i]
        assert torch.equal(a["input"], b["input"]) and b["condition"].shape == (1, 16, 16)
        # Locate the crop in the untransformed full sample, then compare with the full-image TIE.
        whole = full[int(a["index"])]
        micro = Microscope.from_dict(json.loads(whole["params"])["microscope"])
        tie = chromaqpi.reconstruct(whole["input"][None], micro, method="tie")[0]
        inv = {0: 0, 1: 3, 2: 2, 3: 1}.get(int(a["transform"]), int(a["transform"]))  # D4 inverse
        crop_in = torch.from_numpy(apply_transform(a["input"].numpy(), inv))
        found = None
        for y in range(whole["input"].shape[-2] - 15):
            for x in range(whole["input"].shape[-1] - 15):
                if torch.equal(whole["input"][..., y:y + 16, x:x + 16], crop_in):
                    found = (y, x)
        assert found is not None
        y, x = found
        expected = apply_transform(tie[None, y:y + 16, x:x + 16].numpy(), int(a["transform"]))
        np.testing.assert_allclose(b["condition"].numpy(), expected, atol=1e-5)
    # Second access is served from the per-sample cache (one plane per stored sample) and is identical.
    assert len(with_prior._prior_cache) == len({int(plain[i]["index"]) for i in range(4)})
    assert torch.equal(with_prior[0]["condition"], with_prior[0]["condition"])
