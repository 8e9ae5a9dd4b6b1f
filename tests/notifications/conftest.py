from tests.runtime.conftest import node  # noqa: F401  (a node per thespian base)
