"""Build hook for the optional C extensions; all metadata lives in pyproject.toml.

``optional=True``: without a C compiler or Python headers the build only warns and
Wiresens runs on the numpy depth decoder (``wiresens.binance.fastdepth.IMPLEMENTATION``)
and the Python back-test loop (``wiresens.backtest.engine.IMPLEMENTATION``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wiresens._depthparse",
            sources=["wiresens/_depthparse.c"],
            optional=True,
        ),
        Extension(
            "wiresens.backtest._simcore",
            sources=["wiresens/backtest/_simcore.c"],
            optional=True,
        ),
    ]
)
