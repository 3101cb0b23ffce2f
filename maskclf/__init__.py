"""maskclf: train, tune, export and deploy face-mask classifiers.

Importing this package never imports TensorFlow; the heavy modules
(``maskclf.training.train``, ``maskclf.data.pipeline`` ...) import it when they are used.
"""

__version__ = "0.1.0"

from maskclf.files import MaskclfError  # noqa: E402
from maskclf import _moved  # noqa: E402

_moved.install()  # maskclf.train, maskclf.datasets ... (the paths before the subpackages) still import

__all__ = ["__version__", "MaskclfError"]
