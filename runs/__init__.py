"""The runs on real stacks that are not unit tests: the chaos run (`python -m runs.chaos`), the
cluster run (`python -m runs.cluster`, root) and the fuzzer from the OpenAPI contract
(`python -m runs.fuzz`). The test suite starts them too; nothing here is shipped."""
