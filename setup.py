"""Build hook for the optional C extension; all metadata lives in pyproject.toml.

``optional=True``: without a C compiler or Python headers the build only warns and
Wiresens runs on the numpy fallback (``wiresens.binance.fastdepth.IMPLEMENTATION``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wiresens._depthparse",
            sources=["wiresens/_depthparse.c"],
            optional=True,
        )
    ]
)
