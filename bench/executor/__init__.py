"""The executor benchmark (``python -m bench.executor``): ``coderl execute`` against a minimal
forking judge as whole commands, then the executor's Python API against other harnesses."""
