"""Harnesses beside the package: they measure the method and check it against a reference;
nothing in `distil_utils/` imports them. Run from the checkout: `python -m benchmarks.<name>`."""
