"""Settings for every tier.

Model fixtures live with the tiers that need them (`tests/model_fixtures.py`, imported by
tests/tiny and tests/integration), so tests/unit runs on a core install without torch.
"""
