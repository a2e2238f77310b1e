"""Which methods can run here: classical ones always, learned ones when weights ship."""

from importlib import resources

#: the methods that run a trained network (``model=``)
LEARNED_METHODS = ("mean", "ddpm", "cvdm", "zmd")


def has_weights(method: str, model: str = "default") -> bool:
    """True for classical methods, or when bundled weights ``weights/<model>`` exist."""
    if method not in LEARNED_METHODS:
        return True
    folder = resources.files("chromaqpi") / "weights" / model
    return folder.is_dir() and any(p.name.endswith(".safetensors") for p in folder.iterdir())
