"""Real stacks on loopback for what is not a unit test: fresh databases, `server.py` and worker
processes (stack.py), the chaos run (`python -m harness.chaos`) and the fuzzer from the
OpenAPI contract (`python -m harness.fuzz`). The test suite and the benchmarks use them;
nothing here is shipped."""
