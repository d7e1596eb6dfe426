"""netweave benchmarks: `make bench` or `python -m bench [name ...]`; each
benchmark also runs alone (`python -m bench.compile_scale`).  Not tests:
nothing here asserts anything about time."""
