"""The one place the version is written: pyproject reads it (setuptools `attr:`), and the
modules that show it import it from here, not from the package, so no import cycle
runs through `service/__init__.py`."""

__version__ = "0.1.0"
