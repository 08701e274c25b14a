# Thin wrappers around scripts/: `make demo`, `make test`, `make bench`.
.PHONY: setup demo test bench
setup:
	bash scripts/setup.sh
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench: setup
	.venv/bin/python benchmarks/bench_masking.py
