"""The version of snakepit: the one place it is written.

``pyproject.toml`` reads it (setuptools ``dynamic`` version, parsed without
importing the package), and so do ``snakepit.__version__`` and the docs. The
C header's ``SP_CORE_VERSION_*`` macros repeat it as numbers;
``tests/test_version.py`` holds them together. Kept to one literal so that a
worker's import pays nothing for it (``importlib.metadata`` costs tens of ms).
"""

__version__ = "0.8.0"
