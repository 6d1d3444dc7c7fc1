"""Packages are listed here only to ship the top-level `integrations/` folder as rt_middleware.integrations."""

from setuptools import find_packages, setup


def _tree(root: str, folder: str) -> list[str]:
    return [root, *(f"{root}.{sub}" for sub in find_packages(folder))]


setup(
    packages=_tree("rt_middleware", "rt_middleware") + _tree("rt_middleware.integrations", "integrations"),
    package_dir={"rt_middleware": "rt_middleware", "rt_middleware.integrations": "integrations"},
)
