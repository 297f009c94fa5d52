"""`rung run`: prepare a plan, execute its steps, keep their state, write the report."""
