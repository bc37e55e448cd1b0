"""collectstatic-plus: a drop-in ``collectstatic`` that is parallel and honest."""

__version__ = "0.1.0"
