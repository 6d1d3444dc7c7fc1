"""Settings for every tier.

Model fixtures live with the tiers that need them (`tests/model_fixtures.py`, imported by
tests/tiny and tests/integration), so tests/unit runs on a core install without torch.

Data: the suite reads ``$RT_DATA_DIR``, by default the ``shared/data`` folder beside this checkout
(the library itself never searches for it).
"""

from __future__ import annotations

import os
from pathlib import Path

from rt_middleware.datasets.base import DATA_DIR_ENV

_CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not os.environ.get(DATA_DIR_ENV) and _CHECKOUT_DATA.is_dir():
    os.environ[DATA_DIR_ENV] = str(_CHECKOUT_DATA)
