"""The fabric's tests, one folder per package they test; shared helpers in ``tests.support``."""
