"""Never imported: tests name it in broker data to check that task paths from the broker are
looked up among known tasks, not imported."""

raise AssertionError(f"{__name__} was imported from a task path found in broker data")
