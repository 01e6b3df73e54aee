"""Pipeline steps: pure logic in `components.core`, KFP wrappers in `components.steps`."""

__version__ = "0.1.0"
